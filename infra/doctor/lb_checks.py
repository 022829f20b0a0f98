"""The doctor's first stop: the load balancer itself (its type, scheme and state), its
security groups (HTTP from anywhere, not the VPC's default group) and its subnets' routes."""

from __future__ import annotations

from infra.aws import sg_rules, subnet_routes
from infra.config import LISTENER_PORT
from infra.doctor.case import Case
from infra.doctor.findings import ERROR, WARNING


def check_load_balancer(case: Case) -> None:
    lb = case.lb
    if lb.get("Type", "application") != "application":
        case.add(ERROR, "LB_NOT_APPLICATION",
                 f"{case.name} is a {lb['Type']} load balancer",
                 "create an Application Load Balancer (FAQ 6): HTTP listener on 80")
    if lb.get("Scheme") == "internal":
        case.add(ERROR, "LB_INTERNAL",
                 f"{case.name} is internal: its DNS name resolves to private addresses, "
                 "so the autograder on the internet cannot reach it",
                 "create the load balancer again with Scheme: Internet-facing (the scheme "
                 "cannot be changed afterwards), in public subnets")
    state = lb.get("State", {}).get("Code", "active")
    if state == "provisioning":
        case.add(WARNING, "LB_NOT_ACTIVE", f"{case.name} is still provisioning",
                 "wait a few minutes and run the doctor again")
    elif state != "active":
        case.add(ERROR, "LB_NOT_ACTIVE", f"{case.name} is in state {state}: "
                 f"{lb.get('State', {}).get('Reason', '')}".rstrip(": "),
                 "fix the reason AWS gives, or create the load balancer again")


def check_lb_security_groups(case: Case) -> None:
    ids = case.lb.get("SecurityGroups", [])
    if not ids:
        case.add(ERROR, "LB_SG_NO_HTTP", f"{case.name} has no security group",
                 "attach a security group that allows HTTP (TCP 80) from 0.0.0.0/0")
        return
    case.lb_groups = case.ec2.describe_security_groups(GroupIds=ids)["SecurityGroups"]
    for group in case.lb_groups:
        if group.get("GroupName") == "default":
            case.add(ERROR, "DEFAULT_SG_ON_LB",
                     f"{case.name} uses the VPC's default security group {group['GroupId']}",
                     "create a new security group (HTTP, TCP 80, source 0.0.0.0/0) and "
                     "use it instead of the default one, as the seed's step 3 says")
    if not sg_rules.allows_from_anywhere(case.lb_groups, LISTENER_PORT):
        allowed = sg_rules.describe_rule_summary(case.lb_groups, LISTENER_PORT)
        case.add(ERROR, "LB_SG_NO_HTTP",
                 f"{case.name}'s security group(s) {', '.join(ids)} do not allow TCP "
                 f"{LISTENER_PORT} from 0.0.0.0/0 (they allow it from: {allowed}); the "
                 "autograder's connection times out (FAQ 5, 6)",
                 f"add an inbound rule: HTTP, TCP {LISTENER_PORT}, source Anywhere "
                 "(0.0.0.0/0)")


def check_lb_subnets(case: Case) -> None:
    problems = subnet_routes.subnets_without_internet(case.ec2, case.lb_subnet_details)
    for subnet_id, problem in sorted(problems.items()):
        severity = ERROR if case.lb.get("Scheme") != "internal" else WARNING
        case.add(severity, "SUBNET_NO_IGW_ROUTE",
                 f"load balancer subnet {subnet_id} has no route to the internet: {problem}",
                 "in that subnet's route table add a route 0.0.0.0/0 -> the VPC's internet "
                 "gateway (attach one if the VPC has none), or use public subnets")
