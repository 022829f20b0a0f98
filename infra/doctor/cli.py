"""`python -m infra doctor`: the doctor's command line (make doctor)."""

from __future__ import annotations

import argparse
import json
import sys

from infra.aws import lb_lookup
from infra.aws.clients import Clients, resolve_target
from infra.doctor.diagnosis import diagnose
from infra.doctor.findings import has_errors, summary_line


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "doctor",
        parents=[common],
        help="name what is misconfigured on the AWS side (read-only)",
        description="Read the load balancer, listener, target group, target health, "
        "instances, security groups and routes, and name each misconfiguration with its fix. "
        "Read-only. Exit code 0 when there is no error-level finding, 1 otherwise.",
        epilog="examples:\n  python -m infra doctor --stack seed-lb\n"
        "  python -m infra doctor --lb my-alb\n"
        "  python -m infra doctor --lb my-alb-123.us-east-1.elb.amazonaws.com --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lb",
        metavar="NAME_OR_DNS",
        help="the load balancer's name, DNS name or ARN (for one made by hand); "
        "without it the load balancer tagged with --stack is used",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="on real AWS, do not GET each instance's health check path over HTTP",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    region = args.region
    if region is None and args.lb:
        # a DNS name says its region: `make doctor LB=...` works whatever the profile's region
        region = lb_lookup.region_in_dns(args.lb)
    clients = Clients(resolve_target(args.backend, region))
    probe = False if args.no_probe else None
    findings = diagnose(clients, stack=args.stack, lb=args.lb, probe=probe)
    if args.json:
        json.dump({"ok": not has_errors(findings),
                   "findings": [f.to_dict() for f in findings]}, sys.stdout, indent=2)
        print()
    else:
        for finding in findings:
            print(finding.render())
        print(summary_line(findings))
    return 1 if has_errors(findings) else 0
