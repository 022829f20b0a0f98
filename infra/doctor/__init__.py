"""The doctor: reads the AWS side and names each misconfiguration, with its fix.

Entry points: `diagnose(clients, stack, lb)` and `target_health_lines(clients, lb_dns)`
(diagnosis.py), the checks in a request's order (examination.py), the finding codes
(findings.py, target_reasons.py), and `python -m infra doctor` (cli.py). Read-only.
May import infra.aws; never infra.local, infra.grade or infra.bench.
"""
