"""What of a stack exists right now, found by its tags, and the status document made of it
(`make status`, `python -m infra status --json`). Only describe calls."""

from __future__ import annotations

from dataclasses import dataclass

from infra.aws.clients import Clients
from infra.aws.compute import Instances, iso, summary
from infra.aws.loadbalancer import LoadBalancer
from infra.aws.network import FoundNetwork, Network
from infra.aws.security_groups import rules_of


@dataclass
class Survey:
    """What of the stack exists right now, found by tags."""

    network: FoundNetwork
    instances: list[dict]
    load_balancers: list[dict]
    target_groups: list[dict]
    listeners: list[dict]

    @classmethod
    def take(cls, network: Network, instances: Instances, lb: LoadBalancer) -> Survey:
        lbs = lb.find_load_balancers()
        return cls(
            network=network.find(),
            instances=instances.find(),
            load_balancers=lbs,
            target_groups=lb.find_target_groups(),
            listeners=lb.listeners(lbs[0]["LoadBalancerArn"]) if lbs else [],
        )


def status_document(stack: str, clients: Clients, account: str | None, survey: Survey,
                    lb_service: LoadBalancer) -> dict:
    """The stack as `status` shows it; the target health is read now."""
    lb = survey.load_balancers[0] if survey.load_balancers else None
    tg = survey.target_groups[0] if survey.target_groups else None
    net = survey.network
    return {
        "stack": stack,
        "region": clients.target.region,
        "account": account,
        "emulator": clients.target.is_emulator,
        "endpoint_url": clients.target.endpoint_url,
        "vpc_id": net.vpc["VpcId"] if net.vpc else None,
        "subnets": [{"id": sn["SubnetId"], "az": sn["AvailabilityZone"],
                     "cidr": sn["CidrBlock"]} for sn in net.subnets.values()],
        "security_groups": [
            {"id": g["GroupId"], "name": g["GroupName"],
             "rules": sorted(f"tcp/{p} from {src}" for p, _, src in rules_of(g))}
            for g in net.security_groups.values()
        ],
        "load_balancer": None if lb is None else {
            "name": lb["LoadBalancerName"], "arn": lb["LoadBalancerArn"],
            "dns": lb["DNSName"], "state": lb.get("State", {}).get("Code"),
            "scheme": lb.get("Scheme"),
            "created": iso(lb.get("CreatedTime")),
            "zones": len(lb.get("AvailabilityZones") or []),
        },
        "listeners": [{"port": li["Port"], "protocol": li["Protocol"],
                       "forwards_to": [a.get("TargetGroupArn")
                                       for a in li.get("DefaultActions") or []]}
                      for li in survey.listeners],
        "target_group": None if tg is None else {
            "name": tg["TargetGroupName"], "arn": tg["TargetGroupArn"],
            "port": tg["Port"], "protocol": tg["Protocol"],
            "health_check_path": tg.get("HealthCheckPath"),
        },
        "target_health": lb_service.health(tg["TargetGroupArn"]) if tg else [],
        "instances": [summary(i) for i in survey.instances],
    }
