"""What runs on the operator's machine: provisioning, local testbed, grader, doctor, bench.

Packages: aws (the stack on AWS, LocalStack or moto), local (the testbed), grade (the
autograder's view over HTTP), doctor (reads the AWS side), bench (make bench). At the top:
cli and __main__ (`python -m infra`), and config, errors, console, state, shared by all.
Dependencies run one way: docs/architecture.md draws them; tests/test_layout.py keeps them.
"""
