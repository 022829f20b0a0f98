"""What deploy would create, keep or delete, one line each (`make plan`, and deploy's own
first lines): the decisions set against what exists (the survey)."""

from __future__ import annotations

from infra.aws.compute import Instances, summary
from infra.aws.decisions import Decisions
from infra.aws.network import Network
from infra.aws.security_groups import SecurityGroups
from infra.aws.survey import Survey
from infra.config import Settings


def _line(exists, what: str, detail: str = "") -> str:
    return f"{'keep  ' if exists else 'create'} {what}{detail}"


def plan_lines(s: Settings, d: Decisions, survey: Survey, network: Network,
               groups: SecurityGroups, instances: Instances) -> list[str]:
    return [*_network_lines(s, d, survey, network), *_security_group_lines(s, d, survey, groups),
            *_load_balancer_lines(s, survey), *_instance_lines(d, survey, instances)]


def _network_lines(s: Settings, d: Decisions, survey: Survey, network: Network) -> list[str]:
    if d.default_vpc:
        return [f"use    default VPC {d.default_vpc[0]}"]
    net = survey.network
    lines = [_line(net.vpc, "VPC", f" {net.vpc['VpcId']}" if net.vpc else f" {s.vpc_cidr}"),
             _line(net.igw, "internet gateway + route table to it")]
    for index, zone in enumerate(d.placement.zones):
        sn = net.subnets.get(network.subnet_name(index))
        lines.append(_line(sn, f"public subnet in {sn['AvailabilityZone'] if sn else zone}"))
    return lines


def _security_group_lines(s: Settings, d: Decisions, survey: Survey,
                          groups: SecurityGroups) -> list[str]:
    found = survey.network.security_groups
    app_rules = [f"tcp/{s.app_port} from the load balancer's group"]
    if d.public_cidr:
        app_rules.append(f"tcp/{s.app_port} from {d.public_cidr}")
    if d.ssh_cidr:
        app_rules.append(f"tcp/22 from {d.ssh_cidr}")
    return [_line(groups.lb_sg_name in found, f"security group {groups.lb_sg_name}",
                  f": tcp/{s.listener_port} from 0.0.0.0/0 and ::/0"),
            _line(groups.app_sg_name in found, f"security group {groups.app_sg_name}",
                  ": " + ", ".join(app_rules))]


def _load_balancer_lines(s: Settings, survey: Survey) -> list[str]:
    has_listener = any(li["Port"] == s.listener_port for li in survey.listeners)
    return [_line(survey.target_groups, f"target group {s.tg_name}",
                  f": HTTP {s.app_port}, health check GET {s.health_check_path} every "
                  f"{s.health_check_interval}s, healthy after {s.healthy_threshold}"),
            _line(survey.load_balancers, f"load balancer {s.lb_name}",
                  ": internet-facing, in both subnets"),
            _line(has_listener, f"listener HTTP {s.listener_port}",
                  f" -> target group (port {s.app_port})")]


def _instance_lines(d: Decisions, survey: Survey, instances: Instances) -> list[str]:
    lines, existing = [], {}
    for instance in survey.instances:
        existing.setdefault(summary(instance)["name"], instance)
    wanted = instances.wanted_names()
    for index, name in enumerate(wanted):
        zone = d.placement.zones[index % 2]
        if name in existing:
            lines.append(f"keep   instance {name} {existing[name]['InstanceId']}")
        else:
            lines.append(f"create instance {name}: {d.placement.instance_type}, "
                         f"Amazon Linux 2023, IMDSv2, public IP, {zone}")
    seen: set[str] = set()
    for instance in survey.instances:
        name = summary(instance)["name"]
        if name not in wanted or name in seen:
            lines.append(f"delete instance {instance['InstanceId']} ({name}): surplus")
        seen.add(name)
    return lines
