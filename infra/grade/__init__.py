"""The grader: checks a load balancer over plain HTTP, the way the autograder will.

`grade(address, instances)` (grader.py) -> Report (report.py), bounded by http_probe.py;
address.py, pitfalls.py (the FAQ's terms), display.py (terminal-safe text), cli.py.
Imports no AWS: only target_health.py (`grade --aws`) reaches infra.aws and infra.doctor.
Never imports infra.local or infra.bench.
"""
