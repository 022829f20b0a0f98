"""The instances behind the targets: running, in an Availability Zone the load balancer
serves, security groups that admit the load balancer (and its group that lets it out), their
subnets' routes, and, on real AWS only, a GET of the health check path."""

from __future__ import annotations

from infra.aws import sg_rules, subnet_routes
from infra.aws.compute import security_group_ids
from infra.config import APP_PORT, HEALTH_CHECK_PATH
from infra.doctor.case import Case
from infra.doctor.findings import ERROR, INFO, WARNING
from infra.doctor.health_probe import probe_health_check


def check_instances(case: Case, tg: dict, targets: list[dict]) -> None:
    instances = instances_for(case, tg, targets)
    ports = {d["Target"]["Id"]: d["Target"].get("Port") or tg.get("Port") for d in targets}
    # instances sharing the same security groups and port get one finding, not one each
    by_groups: dict[tuple[tuple[str, ...], int], list[dict]] = {}
    for target_id, instance in instances.items():
        port = ports.get(target_id) or APP_PORT
        if instance is None:
            case.add(ERROR, "INSTANCE_NOT_RUNNING",
                     f"target {target_id} is not an existing EC2 instance",
                     "register the two running instances instead")
            continue
        iid = instance["InstanceId"]
        state = instance.get("State", {}).get("Name", "unknown")
        if state != "running":
            case.add(ERROR, "INSTANCE_NOT_RUNNING", f"instance {iid} is {state}",
                     "start it (EC2 > Instances > Start), then ssh in and start the app "
                     "again: a restart does not restart a hand-started app (FAQ 4)")
        zone = instance.get("Placement", {}).get("AvailabilityZone")
        if zone and case.lb_zones and zone not in case.lb_zones:
            case.add(ERROR, "INSTANCE_AZ_NOT_ENABLED",
                     f"instance {iid} is in {zone}, where {case.name} has no subnet, so it "
                     "gets no traffic",
                     f"add a subnet in {zone} to the load balancer's network mapping")
        key = (tuple(sorted(security_group_ids(instance))), port)
        by_groups.setdefault(key, []).append(instance)
        maybe_probe(case, iid, instance, port, tg)
    for (ids, port), members in by_groups.items():
        check_instance_groups(case, list(ids), port, members)
    subnets = {i["SubnetId"] for i in instances.values() if i and i.get("SubnetId")}
    others = subnet_routes.describe_subnets(case.ec2, sorted(subnets - set(case.lb_subnets)))
    for subnet_id, problem in sorted(subnet_routes.subnets_without_internet(
            case.ec2, others).items()):
        case.add(WARNING, "INSTANCE_SUBNET_NO_IGW_ROUTE",
                 f"instance subnet {subnet_id} has no route to the internet: {problem}; "
                 "you cannot ssh in and the instance cannot install packages",
                 "add a route 0.0.0.0/0 -> the internet gateway to its route table")


def check_instance_groups(case: Case, ids: list[str], port: int, members: list[dict]) -> None:
    """Do these instances' groups admit the LB, and does the LB's group let it out?"""
    who = ", ".join(i["InstanceId"] for i in members)
    plural = "s" if len(members) > 1 else ""
    groups = case.ec2.describe_security_groups(GroupIds=ids)["SecurityGroups"] if ids else []
    for group in groups:
        if group.get("GroupName") == "default":
            case.add(WARNING, "DEFAULT_SG_ON_INSTANCE",
                     f"instance{plural} {who} use{'' if plural else 's'} the VPC's default "
                     f"security group {group['GroupId']}, which only admits its own members",
                     "give the instances their own security group: TCP "
                     f"{APP_PORT} from the load balancer's security group, SSH from you")
    lb_group_ids = {g["GroupId"] for g in case.lb_groups}
    if not sg_rules.allows_from(groups, port, lb_group_ids, case.lb_subnet_cidrs):
        case.add(ERROR, "INSTANCE_SG_BLOCKS_LB",
                 f"instance{plural} {who}: security group(s) {', '.join(ids) or '(none)'} "
                 f"do not allow TCP {port} from the load balancer's security group "
                 f"({', '.join(sorted(lb_group_ids)) or 'none'}) or its subnets "
                 f"(allowed: {sg_rules.describe_rule_summary(groups, port)}); health "
                 "checks time out and the load balancer answers 502/503 (FAQ 6)",
                 f"add an inbound rule to the instances' security group: Custom TCP {port}, "
                 "source the load balancer's security group (seed step 2)")
    private = [f"{i['PrivateIpAddress']}/32" for i in members if i.get("PrivateIpAddress")]
    if case.lb_groups and private and not sg_rules.allows_from(
            case.lb_groups, port, set(ids), private, egress=True):
        case.add(ERROR, "LB_SG_EGRESS_BLOCKED",
                 f"the load balancer's security group does not allow outbound TCP {port} "
                 f"to instance{plural} {who}",
                 "restore the outbound rule 'All traffic to 0.0.0.0/0', or allow TCP "
                 f"{port} to the instances' security group")


def instances_for(case: Case, tg: dict, targets: list[dict]) -> dict[str, dict | None]:
    """target id -> its EC2 instance (None when there is no such instance)."""
    if tg.get("TargetType") == "lambda":
        return {}
    ids = [d["Target"]["Id"] for d in targets]
    if tg.get("TargetType") == "ip":
        key, field = "private-ip-address", "PrivateIpAddress"
    else:
        key, field = "instance-id", "InstanceId"
    pages = case.ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": key, "Values": ids}])
    found = {inst[field]: inst for page in pages for res in page["Reservations"]
             for inst in res["Instances"]}
    return {target_id: found.get(target_id) for target_id in ids}


def maybe_probe(case: Case, iid: str, instance: dict, port: int, tg: dict) -> None:
    """Real AWS only: GET the health check path on the instance's public address."""
    address = instance.get("PublicIpAddress")
    if not case.probe or not address or instance.get("State", {}).get("Name") != "running":
        return
    path = tg.get("HealthCheckPath") or HEALTH_CHECK_PATH
    status, error = probe_health_check(address, port, path)
    if status is None:
        case.add(INFO, "PROBE_UNREACHABLE",
                 f"could not GET http://{address}:{port}{path} from here ({error}); that is "
                 "normal when the instances only admit the load balancer")
    elif status != 200:
        case.add(ERROR, "HEALTH_CHECK_NOT_200",
                 f"GET http://{address}:{port}{path} on instance {iid} answered {status}, "
                 "not 200",
                 f"point the target group's health check path at {HEALTH_CHECK_PATH} "
                 "(or /), which the app answers with 200")
