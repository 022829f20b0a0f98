"""Read the stack back from the control plane: instances, the load balancer's listener, its
target group (health check) and the registered targets. The local testbed builds everything
from this view, found by the stack's tags, and never from a config of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.config import LISTENER_PORT, PROJECT, TAG_PROJECT, TAG_STACK, stack_filters

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
class Target:
    id: str
    port: int
    state: str  # the control plane's view: healthy, unhealthy, initial, unused, draining
    reason: str = ""


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
    targets: list[Target] = field(default_factory=list)

    @property
    def in_service(self) -> list[Target]:
        """The targets an ALB would route to (before its own health checks)."""
        return [t for t in self.targets if t.state not in OUT_OF_SERVICE_STATES]


def _tag_map(tags: list[dict]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def _ours(tags: list[dict], stack: str) -> bool:
    found = _tag_map(tags)
    return found.get(TAG_PROJECT) == PROJECT and found.get(TAG_STACK) == stack


def find_instance_ids(ec2, stack: str) -> list[str]:
    filters = stack_filters(stack) + [
        {"Name": "instance-state-name", "Values": ["pending", "running"]}
    ]
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                # By Name (app-1, app-2: stable across runs), then launch order.
                name = _tag_map(inst.get("Tags", [])).get("Name", "")
                found.append((name, inst["LaunchTime"], inst["InstanceId"]))
    return [iid for *_, iid in sorted(found)]


def find_load_balancer(elbv2, stack: str) -> dict | None:
    lbs = []
    for page in elbv2.get_paginator("describe_load_balancers").paginate():
        lbs.extend(page["LoadBalancers"])
    for start in range(0, len(lbs), 20):  # describe_tags takes at most 20 ARNs
        chunk = lbs[start : start + 20]
        described = elbv2.describe_tags(ResourceArns=[lb["LoadBalancerArn"] for lb in chunk])
        for desc in described["TagDescriptions"]:
            if _ours(desc.get("Tags", []), stack):
                return next(lb for lb in chunk if lb["LoadBalancerArn"] == desc["ResourceArn"])
    return None


def _forward_target_group(listener: dict) -> str | None:
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            return action["TargetGroupArn"]
        groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
        if groups:
            return groups[0]["TargetGroupArn"]
    return None


def find_listener(elbv2, lb_arn: str) -> dict | None:
    """The HTTP listener that forwards to a target group (port 80 if there are several)."""
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
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


def registered_targets(elbv2, tg_arn: str) -> list[Target]:
    descriptions = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return [
        Target(
            id=d["Target"]["Id"],
            port=int(d["Target"].get("Port", 0)),
            state=d.get("TargetHealth", {}).get("State", ""),
            reason=d.get("TargetHealth", {}).get("Reason", ""),
        )
        for d in descriptions
    ]


def read_stack(clients, stack: str) -> StackView:
    """One consistent look at the stack in the control plane."""
    instance_ids = find_instance_ids(clients.ec2, stack)
    lb = find_load_balancer(clients.elbv2, stack)
    listener = find_listener(clients.elbv2, lb["LoadBalancerArn"]) if lb else None
    tg_arn = _forward_target_group(listener) if listener else None
    tg = None
    if tg_arn:
        tg = clients.elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
    return StackView(
        stack=stack,
        instance_ids=instance_ids,
        lb_arn=lb["LoadBalancerArn"] if lb else None,
        lb_dns=lb.get("DNSName") if lb else None,
        listener_port=listener["Port"] if listener else None,
        target_group_arn=tg_arn,
        target_port=int(tg["Port"]) if tg else None,
        health=health_of(tg) if tg else None,
        targets=registered_targets(clients.elbv2, tg_arn) if tg_arn else [],
    )
