"""`python -m infra grade ADDRESS`: the grader's command line (make grade LB=...)."""

from __future__ import annotations

import argparse
import json
import sys

from infra.config import STATE_DIR
from infra.errors import UserError
from infra.grade.address import instances_from_state, parse_address, parse_instances
from infra.grade.grader import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, grade
from infra.grade.target_health import target_health


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "grade",
        parents=[common],
        help="check a load balancer the way the autograder will, and say why it would fail",
        description="Check a load balancer over HTTP the way the autograder will: the name "
        "resolves and port 80 opens, GET / returns a bare integer, POST / {\"num\": N} "
        "reaches every instance, two instances serve, and (with instance addresses) each "
        "instance answers on :5000. Each failure is named in the seed FAQ's terms.",
        epilog="examples:\n"
        "  python -m infra grade my-lb-123.us-east-1.elb.amazonaws.com\n"
        "  python -m infra grade 127.0.0.1:8080 --instances 127.0.0.11:5000,127.0.0.12:5000\n"
        "exit status: 0 on PASS, 1 on FAIL, 2 on a usage error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address", help="the load balancer's DNS name (http://, a trailing / "
                        "and :80 are accepted and removed)")
    parser.add_argument("--instances", default=None, metavar="IP1,IP2",
                        help="instance addresses to check directly (ip means ip:5000; "
                        "host:port allowed). Default: from the state file whose load balancer "
                        "is ADDRESS, if any")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="deadline for each request: connect, status line, headers and "
                        f"body together, in seconds (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="S",
                        help="deadline for the whole grade, in seconds (default: "
                        f"{DEFAULT_DEADLINE:g}); a dead address costs one --timeout, not this")
    parser.add_argument("--state-dir", default=STATE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--aws", action="store_true",
                        help="on a 502/503/504, ask AWS for the targets' health reasons "
                        "(uses --backend/--region; without this flag AWS is never touched)")
    parser.set_defaults(func=run_command)


def run_command(args) -> int:
    if not 0 < args.timeout <= 60:
        raise UserError("--timeout must be between 0 and 60 seconds")
    if not 0 < args.deadline <= 600:
        raise UserError("--deadline must be between 0 and 600 seconds")
    address = parse_address(args.address)
    source = ""
    match = instances_from_state(address, args.state_dir, args.stack)
    if args.instances is not None:
        instances = parse_instances(args.instances) if args.instances.strip() else []
        source = "from --instances" if instances else ""
    else:
        instances = match.instances if match else []
        if match:
            source = f"from {match.path}"
            if match.skipped:
                source += f"; without a public IP: {', '.join(match.skipped)}"
    report = grade(address, instances, timeout=args.timeout, deadline=args.deadline)
    report.instances_source = source
    if args.aws and any(s in (502, 503, 504) for s in report.lb_statuses):
        report.check(2).details += target_health(args, address, match.state if match else {})
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    sys.stdout.flush()
    return 0 if report.passed else 1
