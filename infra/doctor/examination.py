"""The doctor's checks, in the order a request travels: load balancer, its security group
and subnets (lb_checks), the listener (listener_checks), the target group and each target's
health (target_checks), the instances (instance_checks).

One `Examination` per load balancer; each check adds findings to its `Case`. Read-only.
"""

from __future__ import annotations

from infra.aws import lb_lookup
from infra.aws.clients import Clients
from infra.doctor import instance_checks, lb_checks, listener_checks, target_checks
from infra.doctor.case import Case, target_health
from infra.doctor.findings import ERROR, INFO, Finding, sort_findings

__all__ = ["Examination", "load_balancer_target_groups", "target_health"]


def load_balancer_target_groups(clients: Clients, lb: dict) -> list[dict]:
    return clients.elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])[
        "TargetGroups"]


class Examination:
    """One pass over one load balancer."""

    def __init__(self, clients: Clients, lb: dict, how: str, *, stack: str | None,
                 probe: bool):
        self.case = Case(clients, lb, probe=probe)
        self.how = how
        self.stack = stack

    @property
    def findings(self) -> list[Finding]:
        return self.case.findings

    def run(self) -> list[Finding]:
        case = self.case
        case.add(INFO, "LB_FOUND",
                 f"load balancer {case.name} ({case.lb.get('Scheme')}, "
                 f"{case.lb['DNSName']}) found {self.how}")
        lb_checks.check_load_balancer(case)
        lb_checks.check_lb_security_groups(case)
        lb_checks.check_lb_subnets(case)
        forwarded = listener_checks.check_listeners(case)
        for tg in self.choose_target_groups(forwarded):
            targets = target_checks.check_target_group(case, tg)
            if targets:
                target_checks.check_target_health(case, tg, targets)
                target_checks.check_boot_logs(case, tg, targets)
                instance_checks.check_instances(case, tg, targets)
        found, rest = case.findings[0], case.findings[1:]
        return [found, *sort_findings(rest)]

    def choose_target_groups(self, forwarded: list[str]) -> list[dict]:
        """The target groups to examine: the ones the stack (or the user) meant to use.

        With --stack that is the stack's tagged group. For a hand-made stack it is the one
        the listener forwards to, unless that one is empty while another group in the VPC
        holds targets: then the listener points at the wrong group.
        """
        case = self.case
        groups = {tg["TargetGroupArn"]: tg for tg in lb_lookup.all_target_groups(case.elbv2)}
        forwarded_groups = [groups[arn] for arn in forwarded if arn in groups]
        case.health = {arn: target_health(case.clients, arn) for arn in groups
                       if groups[arn].get("VpcId") == case.lb.get("VpcId")}
        if self.stack:
            # the groups listed above: no second DescribeTargetGroups
            intended = lb_lookup.stack_tagged(case.elbv2, list(groups.values()),
                                              "TargetGroupArn", self.stack)
        elif any(case.health.get(tg["TargetGroupArn"]) for tg in forwarded_groups):
            intended = forwarded_groups
        else:
            # groups with targets that no other load balancer uses: the student's own
            intended = [tg for arn, tg in groups.items()
                        if case.health.get(arn) and arn not in forwarded
                        and set(tg.get("LoadBalancerArns", [])) <= {case.lb["LoadBalancerArn"]}]
        intended_arns = {tg["TargetGroupArn"] for tg in intended}
        if forwarded_groups and intended and not intended_arns & set(forwarded):
            names = ", ".join(tg["TargetGroupName"] for tg in forwarded_groups)
            meant = ", ".join(tg["TargetGroupName"] for tg in intended)
            case.add(ERROR, "LISTENER_WRONG_TARGET_GROUP",
                     f"the listener forwards to {names}, but the instances are registered in "
                     f"{meant}",
                     f"edit the listener's default action: forward to {meant}")
        return intended or forwarded_groups
