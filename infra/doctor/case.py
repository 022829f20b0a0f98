"""The case before the doctor: one load balancer, what the checks learn about it on the way
(its security groups, its subnets, its target groups' health), and the findings so far.
Each check module (lb_checks, listener_checks, target_checks, instance_checks) reads and
adds to it; examination.py runs them in the order a request travels."""

from __future__ import annotations

import functools

from infra.aws import subnet_routes
from infra.aws.clients import Clients
from infra.doctor.findings import Finding


def target_health(clients: Clients, tg_arn: str) -> list[dict]:
    return clients.elbv2.describe_target_health(TargetGroupArn=tg_arn)[
        "TargetHealthDescriptions"]


class Case:
    def __init__(self, clients: Clients, lb: dict, *, probe: bool):
        self.clients = clients
        self.ec2 = clients.ec2
        self.elbv2 = clients.elbv2
        self.lb = lb
        self.probe = probe  # GET each instance's health check path (real AWS only)
        self.findings: list[Finding] = []
        self.lb_groups: list[dict] = []  # the load balancer's security groups, described
        self.health: dict[str, list[dict]] = {}  # target group ARN -> DescribeTargetHealth
        self.lb_subnets = [az["SubnetId"] for az in lb.get("AvailabilityZones", [])
                           if az.get("SubnetId")]
        self.lb_zones = {az["ZoneName"] for az in lb.get("AvailabilityZones", [])}

    def add(self, severity: str, code: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(severity, code, message, fix))

    @property
    def name(self) -> str:
        return self.lb["LoadBalancerName"]

    @functools.cached_property
    def lb_subnet_details(self) -> list[dict]:
        """DescribeSubnets of the LB's subnets, once: for their routes and their CIDRs."""
        return subnet_routes.describe_subnets(self.ec2, self.lb_subnets)

    @property
    def lb_subnet_cidrs(self) -> list[str]:
        return [s["CidrBlock"] for s in self.lb_subnet_details if s.get("CidrBlock")]
