"""Read the stack back from the control plane: instances, the load balancer's listener, its
target group (health check) and the registered targets. The local testbed builds everything
from this view, found by the stack's tags, and never from a config of its own.

`read_stack` gives the StackView; `read_all` gives it with the NetworkView around it (the load
balancer, its listeners, the security groups, the instances in every state, the subnets),
which the supervisor needs to apply AWS's network rules (infra/local/netrules.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from infra.aws import lb_lookup
from infra.aws.compute import security_group_ids
from infra.config import LISTENER_PORT, stack_filters

# Target states in which an ALB would not send traffic whatever the health check says.
OUT_OF_SERVICE_STATES = {"unused", "draining"}


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval: int
    timeout: int
    healthy: int
    unhealthy: int
    matcher: str  # the target group's HttpCode, e.g. "200" or "200-299"
    port: str = "traffic-port"
    enabled: bool = True


@dataclass(frozen=True)
class TargetView:
    """A registered target as DescribeTargetHealth reports it."""

    id: str
    port: int
    state: str  # the control plane's view: healthy, unhealthy, initial, unused, draining
    reason: str = ""
    description: str = ""


@dataclass(frozen=True)
class StackView:
    stack: str
    instance_ids: list[str]  # running or pending, in launch order
    lb_arn: str | None
    lb_dns: str | None
    listener_port: int | None
    target_group_arn: str | None
    target_port: int | None
    health: HealthCheck | None
    targets: list[TargetView] = field(default_factory=list)

    @property
    def in_service(self) -> list[TargetView]:
        """The targets an ALB would route to (before its own health checks)."""
        return [t for t in self.targets if t.state not in OUT_OF_SERVICE_STATES]


def _tag_map(tags: list[dict]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def find_instance_ids(ec2, stack: str) -> list[str]:
    return _launch_order(_stack_instances(ec2, stack))


def find_load_balancer(elbv2, stack: str) -> dict | None:
    """The stack's load balancer, by its tags (deploy and the doctor find it the same way)."""
    return next(iter(lb_lookup.stack_tagged(elbv2, lb_lookup.all_load_balancers(elbv2),
                                            "LoadBalancerArn", stack)), None)


def _forward_target_group(listener: dict) -> str | None:
    """The target group a listener forwards to (the first, for a weighted forward)."""
    return next(iter(lb_lookup.forwarded_target_groups(listener)), None)


def find_listener(elbv2, lb_arn: str) -> dict | None:
    """The HTTP listener that forwards to a target group (port 80 if there are several)."""
    return _pick_listener(elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"])


def _pick_listener(listeners: list[dict]) -> dict | None:
    forwarding = [lst for lst in listeners if _forward_target_group(lst)]
    forwarding.sort(key=lambda lst: (lst["Port"] != LISTENER_PORT, lst["Port"]))
    return forwarding[0] if forwarding else None


def health_of(tg: dict) -> HealthCheck:
    return HealthCheck(
        path=tg.get("HealthCheckPath", "/"),
        interval=int(tg.get("HealthCheckIntervalSeconds", 30)),
        timeout=int(tg.get("HealthCheckTimeoutSeconds", 5)),
        healthy=int(tg.get("HealthyThresholdCount", 5)),
        unhealthy=int(tg.get("UnhealthyThresholdCount", 2)),
        matcher=tg.get("Matcher", {}).get("HttpCode", "200"),
        port=str(tg.get("HealthCheckPort", "traffic-port")),
        enabled=bool(tg.get("HealthCheckEnabled", True)),
    )


def registered_targets(elbv2, tg_arn: str) -> list[TargetView]:
    descriptions = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return [
        TargetView(
            id=d["Target"]["Id"],
            port=int(d["Target"].get("Port", 0)),
            state=d.get("TargetHealth", {}).get("State", ""),
            reason=d.get("TargetHealth", {}).get("Reason", ""),
            description=d.get("TargetHealth", {}).get("Description", ""),
        )
        for d in descriptions
    ]


@dataclass(frozen=True)
class NetworkView:
    """What surrounds the StackView, as the control plane describes it."""

    lb: dict | None = None  # DescribeLoadBalancers' entry
    listeners: list[dict] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)  # security groups by id
    instances: dict[str, dict] = field(default_factory=dict)  # by id, any state
    subnets: dict[str, dict] = field(default_factory=dict)  # the load balancer's, by id
    route_tables: list[dict] = field(default_factory=list)  # the load balancer's VPC's


def _stack_instances(ec2, stack: str) -> list[dict]:
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=stack_filters(stack)):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    return found


def _launch_order(instances: list[dict]) -> list[str]:
    """Running or pending, by Name (app-1, app-2: stable across runs), then launch order."""
    live = [i for i in instances if i.get("State", {}).get("Name") in ("pending", "running")]
    keyed = [(_tag_map(i.get("Tags", [])).get("Name", ""), i["LaunchTime"], i["InstanceId"])
             for i in live]
    return [iid for *_, iid in sorted(keyed)]


def _view(stack, instance_ids, lb, listener, tg, tg_arn, targets) -> StackView:
    return StackView(
        stack=stack,
        instance_ids=instance_ids,
        lb_arn=lb["LoadBalancerArn"] if lb else None,
        lb_dns=lb.get("DNSName") if lb else None,
        listener_port=listener["Port"] if listener else None,
        target_group_arn=tg_arn,
        target_port=int(tg["Port"]) if tg else None,
        health=health_of(tg) if tg else None,
        targets=targets,
    )


def read_stack(clients, stack: str) -> StackView:
    """One consistent look at the stack in the control plane."""
    instance_ids = find_instance_ids(clients.ec2, stack)
    lb = find_load_balancer(clients.elbv2, stack)
    listener = find_listener(clients.elbv2, lb["LoadBalancerArn"]) if lb else None
    tg_arn = _forward_target_group(listener) if listener else None
    tg = None
    if tg_arn:
        tg = clients.elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
    targets = registered_targets(clients.elbv2, tg_arn) if tg_arn else []
    return _view(stack, instance_ids, lb, listener, tg, tg_arn, targets)


def _remembered_lb(elbv2, stack: str, memo: dict) -> dict | None:
    """The stack's load balancer; its ARN is remembered, so one call instead of a tag search
    while it lives (a load balancer made again has a new ARN: then search again)."""
    if memo.get("lb_arn"):
        try:
            return elbv2.describe_load_balancers(LoadBalancerArns=[memo["lb_arn"]])[
                "LoadBalancers"][0]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "LoadBalancerNotFound":
                raise
    lb = find_load_balancer(elbv2, stack)
    memo["lb_arn"] = lb["LoadBalancerArn"] if lb else None
    return lb


def read_all(clients, stack: str, memo: dict | None = None) -> tuple[StackView, NetworkView]:
    """The StackView and its NetworkView, in one pass (seven or eight describe calls).

    Pass the same `memo` dict on every call: it keeps what does not change (the load
    balancer's ARN, the subnets' CIDRs).
    """
    ec2, elbv2 = clients.ec2, clients.elbv2
    memo = memo if memo is not None else {}
    instances = {i["InstanceId"]: i for i in _stack_instances(ec2, stack)}
    lb = _remembered_lb(elbv2, stack, memo)
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"] \
        if lb else []
    listener = _pick_listener(listeners)
    tg_arn = _forward_target_group(listener) if listener else None
    tg = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0] \
        if tg_arn else None
    targets = registered_targets(elbv2, tg_arn) if tg_arn else []
    strangers = sorted({t.id for t in targets if t.id.startswith("i-")} - set(instances))
    if strangers:  # registered by hand, from outside the stack's tags
        with contextlib.suppress(ClientError):
            for reservation in ec2.describe_instances(InstanceIds=strangers)["Reservations"]:
                instances.update({i["InstanceId"]: i for i in reservation["Instances"]})
    group_ids = set(lb.get("SecurityGroups", []) if lb else [])
    for instance in instances.values():
        group_ids.update(security_group_ids(instance))
    groups = {}
    if group_ids:
        with contextlib.suppress(ClientError):  # a group deleted under us: next poll
            described = ec2.describe_security_groups(GroupIds=sorted(group_ids))
            groups = {g["GroupId"]: g for g in described["SecurityGroups"]}
    cache = memo.setdefault("subnets", {})
    lb_subnets = [z["SubnetId"] for z in (lb or {}).get("AvailabilityZones", [])
                  if z.get("SubnetId")]
    missing = sorted(set(lb_subnets) - set(cache))
    if missing:
        with contextlib.suppress(ClientError):
            cache.update({sn["SubnetId"]: sn for sn in
                          ec2.describe_subnets(SubnetIds=missing)["Subnets"]})
    tables = []
    if lb and lb.get("VpcId"):
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [lb["VpcId"]]}])["RouteTables"]
    view = _view(stack, _launch_order(list(instances.values())), lb, listener, tg, tg_arn,
                 targets)
    network = NetworkView(lb=lb, listeners=listeners, groups=groups, instances=instances,
                      subnets={s: cache[s] for s in lb_subnets if s in cache},
                      route_tables=tables)
    return view, network
