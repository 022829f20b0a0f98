"""`make bench`: throughput, failover, bad input and provisioning, measured in one run.

Entry point: `python -m infra bench` (cli.py), which writes docs/benchmarks.md and .png
(report.py). Each step has its module: load, failover, badinput, provision.
May import every other package; nothing but infra.cli imports it.
"""
