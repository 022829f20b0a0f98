"""The grader: checks a load balancer over plain HTTP, the way the autograder will.

Entry points: `grade(address, instances)` (grader.py) -> Report (report.py); address.py,
http_probe.py, pitfalls.py (the seed FAQ's terms); `python -m infra grade` (cli.py).
Imports no AWS: only target_health.py (`grade --aws`) reaches infra.aws and infra.doctor,
at run time. Never imports infra.local or infra.bench.
"""
