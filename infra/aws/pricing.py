"""What the stack costs while it exists: one price table, and the arithmetic on it.

The prices are us-east-1 On-Demand list prices in USD, approximations read from AWS's
pricing pages (below); other regions differ by a few percent to about a third. They are
list prices before any free tier: the free tier (750 hours a month of a micro instance, of
an ALB and of public IPv4 under the legacy offer; credits under the plan for accounts made
since July 2025) may cover part or all of it. AWS's bill is the truth; this is the order of
magnitude, so that nothing is left running by surprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

HOURS_PER_MONTH = 730  # AWS's own convention on its pricing pages

# Linux On-Demand, per instance-hour: https://aws.amazon.com/ec2/pricing/on-demand/
INSTANCE_HOURLY = {
    "t2.nano": 0.0058, "t2.micro": 0.0116, "t2.small": 0.023, "t2.medium": 0.0464,
    "t3.nano": 0.0052, "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416,
    "t3a.nano": 0.0047, "t3a.micro": 0.0094, "t3a.small": 0.0188,
    "t4g.nano": 0.0042, "t4g.micro": 0.0084, "t4g.small": 0.0168,
    "c7i-flex.large": 0.08479, "m7i-flex.large": 0.09576,
}
# Application Load Balancer, per hour or partial hour, plus LCU-hours (near zero for a
# grader's few requests): https://aws.amazon.com/elasticloadbalancing/pricing/
ALB_HOURLY = 0.0225
ALB_LCU_HOURLY = 0.008
# Every public IPv4 address, in use or not, since 1 February 2024:
# https://aws.amazon.com/vpc/pricing/ ("Public IPv4 address")
PUBLIC_IPV4_HOURLY = 0.005
# gp3 storage per GB-month (https://aws.amazon.com/ebs/pricing/); Amazon Linux 2023's root
# volume is 8 GiB.
GP3_GB_MONTH = 0.08
ROOT_VOLUME_GB = 8

PRICE_NOTE = ("us-east-1 On-Demand list prices, approximations (infra/aws/pricing.py); "
              "the free tier may cover part of it")


@dataclass(frozen=True)
class Item:
    what: str
    count: int
    hourly_each: float | None  # None: not in the table
    note: str = ""

    @property
    def hourly(self) -> float:
        return self.count * (self.hourly_each or 0.0)


def instance_hourly(instance_type: str) -> float | None:
    return INSTANCE_HOURLY.get(instance_type)


def stack_items(instance_types: list[str], public_ips: int, load_balancers: int,
                lb_zones: int) -> list[Item]:
    """What exists and bills by the hour: instances, their root volumes, the load balancer,
    and the public IPv4 addresses (each instance's, and one per zone of the load balancer)."""
    items: list[Item] = []
    for itype in sorted(set(instance_types)):
        n = instance_types.count(itype)
        items.append(Item(f"{itype} instance", n, instance_hourly(itype),
                          "" if itype in INSTANCE_HOURLY else "price not in the table"))
    if instance_types:
        items.append(Item(f"{ROOT_VOLUME_GB} GiB gp3 root volume", len(instance_types),
                          GP3_GB_MONTH * ROOT_VOLUME_GB / HOURS_PER_MONTH))
    if load_balancers:
        items.append(Item("Application Load Balancer", load_balancers, ALB_HOURLY,
                          f"+ ${ALB_LCU_HOURLY} per LCU-hour, near 0 for a grader"))
    ips = public_ips + load_balancers * lb_zones
    if ips:
        items.append(Item("public IPv4 address", ips, PUBLIC_IPV4_HOURLY,
                          f"{public_ips} on instances, {load_balancers * lb_zones} on the "
                          "load balancer (at least one per zone)"))
    return items


def total_hourly(items: list[Item]) -> float:
    return sum(item.hourly for item in items)


def render_items(items: list[Item]) -> list[str]:
    lines = []
    for item in items:
        price = "unknown" if item.hourly_each is None else f"${item.hourly_each:.4f}/h"
        cost = "" if item.hourly_each is None else f" = ${item.hourly:.4f}/h"
        lines.append(f"  {item.count} x {item.what:28} {item.count} x {price}{cost}"
                     + (f" ({item.note})" if item.note else ""))
    total = total_hourly(items)
    lines.append(f"  total: about ${total:.4f} per hour, ${total * 24:.2f} per day, "
                 f"${total * HOURS_PER_MONTH:.0f} per month")
    return lines


def since(moment: datetime | str | None, now: datetime | None = None) -> float | None:
    """Hours from `moment` (a datetime or an ISO 8601 string) to now."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (now - moment).total_seconds() / 3600)


def cost_so_far(instances: list[dict], load_balancer: dict | None,
                now: datetime | None = None) -> tuple[float | None, float]:
    """(hours since the oldest billed resource appeared, dollars spent since, at these prices).

    `instances`: dicts with "type", "launch_time" and "public_ip"; `load_balancer`: a dict
    with "created" and "zones". An instance's launch time restarts when it is started again,
    so a stopped-and-started instance counts from its last start.
    """
    ages, spent = [], 0.0
    per_volume = GP3_GB_MONTH * ROOT_VOLUME_GB / HOURS_PER_MONTH
    for inst in instances:
        hours = since(inst.get("launch_time"), now)
        if hours is None:
            continue
        ages.append(hours)
        hourly = (instance_hourly(inst.get("type") or "") or 0.0) + per_volume
        if inst.get("public_ip"):
            hourly += PUBLIC_IPV4_HOURLY
        spent += hours * hourly
    if load_balancer:
        hours = since(load_balancer.get("created"), now)
        if hours is not None:
            ages.append(hours)
            zones = load_balancer.get("zones") or 0
            spent += hours * (ALB_HOURLY + zones * PUBLIC_IPV4_HOURLY)
    return (max(ages) if ages else None), spent


def render_age(hours: float) -> str:
    minutes = round(hours * 60)
    if minutes < 60:
        return f"{minutes} min"
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60} h {rest % 60:02d} min"
    return f"{days} d {text}" if days else text
