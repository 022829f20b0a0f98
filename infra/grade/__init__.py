"""The grader: checks a load balancer over plain HTTP, the way the autograder will.

`grade(address, instances)` (grader.py): plan.py sends, checks.py judges, report.py prints;
the transport (transport.py, http_answer.py, http_probe.py) bounds each request.
Imports no AWS: only target_health.py (`grade --aws`) reaches infra.aws and infra.doctor.
Never imports infra.local or infra.bench.
"""
