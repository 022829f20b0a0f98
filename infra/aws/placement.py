"""Where the instances go, settled before anything is created: the instance type, the Amazon
Linux 2023 AMI architecture it boots, and two Availability Zones that both offer it.

The type is EC2's own answer for this account (DescribeInstanceTypes with
free-tier-eligible=true, in whatever order AWS lists them): t3.micro, then t2.micro, then
x86_64 before arm64, then the cheapest. An arm64 type (t4g) boots the arm64 AMI, never the
x86_64 one. An explicit --instance-type wins. In an AWS Academy Learner Lab only sizes nano to
large are candidates, and at most 9 instances run at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from infra.aws import failures, pricing
from infra.aws.clients import Clients
from infra.config import (
    AMI_PARAMETERS,
    LEARNER_LAB_MAX_INSTANCES,
    LEARNER_LAB_SIZES,
    PREFERRED_TYPES,
    Settings,
    stack_filters,
)
from infra.errors import UserError


@dataclass(frozen=True)
class Placement:
    """Where the instances go: a type both AZs offer, the two AZs, and why that type."""

    instance_type: str
    zones: tuple[str, str]
    burstable: bool = False  # T types: launched with standard CPU credits
    why: str = ""
    architecture: str = "x86_64"  # which Amazon Linux 2023 AMI it boots


def architecture_of(info: dict) -> str | None:
    """The Amazon Linux 2023 AMI a type boots: x86_64 where it can, else arm64 (t4g), else
    None (no AL2023 AMI runs it)."""
    supported = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    return next((arch for arch in AMI_PARAMETERS if arch in supported), None)


def free_tier_types(clients: Clients) -> list[dict] | None:
    """EC2's own answer: the types free-tier eligible for this account in this region (in no
    particular order: AWS lists them as it likes), that an Amazon Linux 2023 AMI runs. None
    when the endpoint does not know the filter (an emulator)."""
    try:
        pages = clients.ec2.get_paginator("describe_instance_types").paginate(
            Filters=[{"Name": "free-tier-eligible", "Values": ["true"]}])
        found = [t for page in pages for t in page["InstanceTypes"]]
    except ClientError as exc:
        if failures.code_of(exc) in ("InvalidParameterValue", "InvalidFilter",
                                     "InvalidParameter"):
            return None
        raise
    return [t for t in found if architecture_of(t)]


def _preference(info: dict) -> tuple:
    """t3.micro, t2.micro, then x86_64 before arm64, then the cheapest."""
    name = info["InstanceType"]
    rank = PREFERRED_TYPES.index(name) if name in PREFERRED_TYPES else len(PREFERRED_TYPES)
    price = pricing.instance_hourly(name)
    return (rank, architecture_of(info) != "x86_64", price if price is not None else 1e9,
            info.get("MemoryInfo", {}).get("SizeInMiB", 0), name)


def learner_lab_allows(instance_type: str) -> bool:
    """AWS Academy Learner Lab runs sizes nano to large only."""
    return instance_type.rsplit(".", 1)[-1] in LEARNER_LAB_SIZES


def _describe_types(clients: Clients, names: list[str]) -> list[dict]:
    try:
        return clients.ec2.describe_instance_types(InstanceTypes=names)["InstanceTypes"]
    except ClientError as exc:
        if failures.code_of(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        raise UserError(
            f"EC2 has no instance type {' or '.join(names)} in region "
            f"{clients.target.region} ({failures.code_of(exc)}): check the name (e.g. "
            "t3.micro), or drop --instance-type to get a free-tier-eligible one"
        ) from None


def choose_placement(clients: Clients, settings: Settings, zones: list[str] | None = None,
                     *, learner_lab: bool = False) -> Placement:
    """The instance type, the AMI architecture it boots, and two AZs that both offer it
    (the module's docstring says in which order types are tried). `zones` narrows the AZs
    (the default VPC's subnets'); otherwise every available AZ of the region is a candidate.
    """
    if zones is None:
        zones = _available_zones(clients.ec2)
    eligible = free_tier_types(clients)
    if eligible and learner_lab:
        eligible = [t for t in eligible if learner_lab_allows(t["InstanceType"])]
    if settings.instance_type:
        candidates, why = _the_chosen_type(clients, settings.instance_type, eligible,
                                           learner_lab=learner_lab)
    else:
        candidates, why = _the_cheapest_types(clients, eligible)
    return _in_two_zones(clients.ec2, candidates, zones, why, explicit=bool(
        settings.instance_type))


def _available_zones(ec2) -> list[str]:
    found = ec2.describe_availability_zones(
        Filters=[{"Name": "state", "Values": ["available"]},
                 {"Name": "zone-type", "Values": ["availability-zone"]}]
    )["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in found)


def _the_chosen_type(clients: Clients, instance_type: str, eligible: list[dict] | None, *,
                     learner_lab: bool) -> tuple[list[dict], str]:
    """--instance-type: checked (it exists, an AL2023 AMI runs it, the account allows its
    size), and said whether it is free for this account."""
    if learner_lab and not learner_lab_allows(instance_type):
        raise UserError(failures.learner_lab_limits_line(
            f"--instance-type {instance_type} is larger than that; drop it for a micro type"))
    candidates = _describe_types(clients, [instance_type])
    supported = candidates[0].get("ProcessorInfo", {}).get("SupportedArchitectures") \
        if candidates else None
    if supported and not architecture_of(candidates[0]):
        raise UserError(
            f"instance type {instance_type} runs {'/'.join(supported)}, but Amazon Linux "
            f"2023 has AMIs for {' and '.join(AMI_PARAMETERS)} only: choose a type such as "
            "t3.micro"
        )
    if eligible is None:
        return candidates, "chosen with --instance-type"
    if instance_type in {t["InstanceType"] for t in eligible}:
        return candidates, "chosen with --instance-type; free-tier eligible for this account"
    price = pricing.instance_hourly(instance_type)
    return candidates, ("chosen with --instance-type; NOT free-tier eligible for this account"
                        + (f": about ${price}/h each" if price else ""))


def _the_cheapest_types(clients: Clients, eligible: list[dict] | None) \
        -> tuple[list[dict], str]:
    """No --instance-type: the free-tier-eligible types, best first; without any, the usual
    free types (an emulator does not answer the question; an account may have none)."""
    if eligible:
        names = sorted(t["InstanceType"] for t in eligible)
        return sorted(eligible, key=_preference), (
            "free-tier eligible for this account, EC2's answer (all eligible types here: "
            f"{', '.join(names)})")
    candidates = sorted(_describe_types(clients, list(PREFERRED_TYPES)), key=_preference)
    if eligible is None:
        return candidates, ("the endpoint does not answer the free-tier question: the usual "
                            "free type")
    first = pricing.instance_hourly(candidates[0]["InstanceType"]) if candidates else None
    return candidates, ("EC2 lists no free-tier-eligible type for this account (free tier "
                        "used up, or not offered here): the cheapest usual one, billed"
                        + (f" about ${first}/h each" if first else ""))


def _in_two_zones(ec2, candidates: list[dict], zones: list[str], why: str, *,
                  explicit: bool) -> Placement:
    """The first candidate that two of `zones` offer: an ALB needs subnets in two AZs."""
    names = [t["InstanceType"] for t in candidates]
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": names},
                 {"Name": "location", "Values": zones}],
    )["InstanceTypeOfferings"]
    for info in candidates:
        itype = info["InstanceType"]
        where = sorted({o["Location"] for o in offered if o["InstanceType"] == itype})
        if len(where) >= 2:
            return Placement(itype, (where[0], where[1]),
                             burstable=bool(info.get("BurstablePerformanceSupported")), why=why,
                             architecture=architecture_of(info) or "x86_64")
    raise UserError(
        f"no two Availability Zones among {', '.join(zones) or '(none)'} offer "
        f"{' or '.join(names)}: an ALB needs subnets in two AZs. Try another --region"
        + (" or --instance-type" if explicit else "")
    )


def check_learner_lab_instances(clients: Clients, settings: Settings) -> None:
    """AWS Academy Learner Lab runs at most 9 instances at once: the account's other running
    instances and this stack's must fit, or the launch is refused half-way through."""
    live = {"Name": "instance-state-name", "Values": ["pending", "running"]}
    everyone = {i["InstanceId"] for r in clients.ec2.describe_instances(Filters=[live])[
        "Reservations"] for i in r["Instances"]}
    ours = {i["InstanceId"] for r in clients.ec2.describe_instances(
        Filters=[live, *stack_filters(settings.stack)])["Reservations"] for i in r["Instances"]}
    others = len(everyone - ours)
    if others + settings.instance_count > LEARNER_LAB_MAX_INSTANCES:
        raise UserError(failures.learner_lab_limits_line(
            f"{others} other instances run already, and this stack needs "
            f"{settings.instance_count}: stop some, or use a smaller --count"))
