"""The local testbed: a moto server as AWS, one `python -m app` per instance, Caddy as the ALB.

Entry points: `Testbed(stack, ...)` (testbed.py), `local test` = make test-local (testrun.py),
the failover drill (drill.py), `python -m infra.local.supervisor` (keeps Caddy in step).
May import infra.aws (the same Stack provisions it) and the grader's core (the test run
grades it); never infra.doctor or infra.bench.
"""
