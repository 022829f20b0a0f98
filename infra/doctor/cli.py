"""`python -m infra doctor`: the doctor's command line (make doctor)."""

from __future__ import annotations

import argparse
import json
import sys

from infra.aws import emulator, lb_lookup
from infra.aws.clients import Clients, resolve_target
from infra.config import DEFAULT_STACK, STATE_DIR
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
        epilog="examples:\n  make doctor\n"
        "  make doctor STACK=seed-lb-local                # the local testbed (make local-up)\n"
        "  make doctor LB=127.0.0.1:8080                  # ... by its load balancer\n"
        "  .venv/bin/python -m infra doctor --lb my-alb\n"
        "  .venv/bin/python -m infra doctor --lb my-alb-123.us-east-1.elb.amazonaws.com "
        "--json",
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
    stack, lb = args.stack, args.lb
    # A stack that deploy or `make local-up` put into an emulator on this machine: its
    # state file says where, and the keys are fake (nothing else names an endpoint).
    local = emulator.deployed_in_emulator(stack, STATE_DIR, lb=lb, backend=args.backend,
                                          default_stack=DEFAULT_STACK)
    if local is not None:
        clients = emulator.deployed_clients(local)
        stack, lb = local.stack, (None if lb == local.lb else lb)  # 127.0.0.1:PORT: by stack
    else:
        clients = Clients(resolve_target(args.backend, region))
    probe = False if args.no_probe else None
    findings = diagnose(clients, stack=stack, lb=lb, probe=probe)
    if args.json:
        json.dump({"ok": not has_errors(findings),
                   "findings": [f.to_dict() for f in findings]}, sys.stdout, indent=2)
        print()
    else:
        for finding in findings:
            print(finding.render())
        print(summary_line(findings))
    return 1 if has_errors(findings) else 0
