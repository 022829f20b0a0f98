"""Find an Application Load Balancer by name, DNS name, ARN or this project's tags.

The doctor works on stacks it did not create (an account set up by hand in the console),
so it asks the control plane what exists instead of trusting a state file.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from infra.config import PROJECT, TAG_PROJECT, TAG_STACK
from infra.errors import UserError

# name-1234567890.us-east-1.elb.amazonaws.com (internal-... for internal load balancers)
_REGION_IN_DNS = re.compile(r"\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.elb\.amazonaws\.com$")
_DESCRIBE_TAGS_BATCH = 20  # the API's limit on ResourceArns per call


def normalize_dns(value: str) -> str:
    """`http://Name-1.us-east-1.elb.amazonaws.com:80/` -> `name-1.us-east-1.elb.amazonaws.com`."""
    value = value.strip()
    if "://" not in value:
        value = "//" + value
    host = urlparse(value).hostname or ""
    return host.rstrip(".").lower()


def region_in_dns(value: str) -> str | None:
    """`name-1.eu-west-1.elb.amazonaws.com` -> `eu-west-1`; None for anything else."""
    match = _REGION_IN_DNS.search(normalize_dns(value)) if looks_like_dns(value) else None
    return match.group(1) if match else None


def looks_like_dns(value: str) -> bool:
    return any(ch in value for ch in ".:/")


def all_load_balancers(elbv2) -> list[dict]:
    pages = elbv2.get_paginator("describe_load_balancers").paginate()
    return [lb for page in pages for lb in page["LoadBalancers"]]


def all_target_groups(elbv2) -> list[dict]:
    pages = elbv2.get_paginator("describe_target_groups").paginate()
    return [tg for page in pages for tg in page["TargetGroups"]]


def forwarded_target_groups(listener: dict) -> list[str]:
    """The target group ARNs a listener's default actions forward to, in order: an action's
    TargetGroupArn, then its ForwardConfig's groups (a weighted forward), each once."""
    arns: list[str] = []
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            arns.append(action["TargetGroupArn"])
        for item in action.get("ForwardConfig", {}).get("TargetGroups", []):
            if item.get("TargetGroupArn") and item["TargetGroupArn"] not in arns:
                arns.append(item["TargetGroupArn"])
    return arns


def _where(clients) -> str:
    return clients.target.describe()


def by_name(clients, name: str) -> dict:
    try:
        found = clients.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "LoadBalancerNotFound":
            raise
        found = []
    if found:
        return found[0]
    raise UserError(
        f"no Application Load Balancer named {name!r} ({_where(clients)})."
        + _classic_hint(clients, name)
        + " Check the name in the EC2 console (Load Balancers), or pass its DNS name: "
        "--lb NAME-123.REGION.elb.amazonaws.com; for another region add --region."
        + _present(clients)
    )


def by_dns(clients, value: str) -> dict:
    dns = normalize_dns(value)
    if not dns:
        raise UserError(f"{value!r} is not a load balancer name or DNS name")
    for lb in all_load_balancers(clients.elbv2):
        if lb["DNSName"].rstrip(".").lower() == dns:
            return lb
    hint = ""
    region = region_in_dns(dns)
    if region and region != clients.target.region:
        hint = f" The DNS name is in region {region}: add --region {region}."
    raise UserError(
        f"no Application Load Balancer with DNS name {dns!r} ({_where(clients)})."
        + hint
        + _classic_hint(clients, dns.split(".")[0].rsplit("-", 1)[0])
        + " Copy the DNS name from the load balancer's Description tab, or pass its name."
        + _present(clients)
    )


def by_arn(clients, arn: str) -> dict:
    try:
        return clients.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    except ClientError as exc:
        raise UserError(f"no load balancer with ARN {arn} ({_where(clients)})") from exc


def by_stack(clients, stack: str) -> dict:
    """The one load balancer tagged Project=seed-lb, Stack=<stack>."""
    lbs = all_load_balancers(clients.elbv2)
    tagged = stack_tagged(clients.elbv2, lbs, "LoadBalancerArn", stack)
    if len(tagged) == 1:
        return tagged[0]
    if not tagged:
        raise UserError(
            f"no load balancer tagged {TAG_PROJECT}={PROJECT}, {TAG_STACK}={stack} "
            f"({_where(clients)}). Deploy it with `make deploy-aws STACK={stack}`, or, for a "
            "load balancer made by hand, name it: `make doctor LB=<name or DNS name>` "
            "(.venv/bin/python -m infra doctor --lb NAME_OR_DNS)." + _present(clients, lbs)
        )
    names = ", ".join(lb["LoadBalancerName"] for lb in tagged)
    raise UserError(
        f"{len(tagged)} load balancers are tagged {TAG_STACK}={stack} ({names}); "
        "pick one with --lb NAME"
    )


def find(clients, stack: str | None = None, lb: str | None = None) -> tuple[dict, str]:
    """(the load balancer, how it was found). `lb` wins over `stack`."""
    if lb:
        lb = lb.strip()
        if lb.startswith("arn:"):
            return by_arn(clients, lb), f"by ARN {lb}"
        if looks_like_dns(lb):
            return by_dns(clients, lb), f"by DNS name {normalize_dns(lb)}"
        return by_name(clients, lb), f"by name {lb}"
    if stack:
        return by_stack(clients, stack), f"by tags {TAG_PROJECT}={PROJECT}, {TAG_STACK}={stack}"
    raise UserError("name a load balancer: --lb NAME_OR_DNS, or --stack NAME for a deployed stack")


def tags_by_arn(elbv2, arns: list[str]) -> dict[str, dict[str, str]]:
    """ARN -> {key: value}, in batches of 20 as DescribeTags requires."""
    out: dict[str, dict[str, str]] = {}
    for start in range(0, len(arns), _DESCRIBE_TAGS_BATCH):
        batch = arns[start : start + _DESCRIBE_TAGS_BATCH]
        for desc in elbv2.describe_tags(ResourceArns=batch)["TagDescriptions"]:
            out[desc["ResourceArn"]] = {t["Key"]: t["Value"] for t in desc.get("Tags") or []}
    return out


def _matches(tags: dict[str, str], stack: str) -> bool:
    return tags.get(TAG_PROJECT) == PROJECT and tags.get(TAG_STACK) == stack


def stack_tagged(elbv2, resources: list[dict], arn_key: str, stack: str) -> list[dict]:
    """The load balancers or target groups among `resources` tagged Project=seed-lb,
    Stack=<stack>: ELBv2's describe calls have no tag filter. Deploy and the doctor share it."""
    tags = tags_by_arn(elbv2, [r[arn_key] for r in resources])
    return [r for r in resources if _matches(tags.get(r[arn_key], {}), stack)]


def _present(clients, lbs: list[dict] | None = None) -> str:
    if lbs is None:
        lbs = all_load_balancers(clients.elbv2)
    if not lbs:
        return " There is no Application Load Balancer in this region at all."
    shown = ", ".join(f"{lb['LoadBalancerName']} ({lb['DNSName']})" for lb in lbs[:5])
    more = f" and {len(lbs) - 5} more" if len(lbs) > 5 else ""
    return f" Load balancers here: {shown}{more}."


def _classic_hint(clients, name: str) -> str:
    """FAQ 6: a Classic Load Balancer is a common wrong turn; say so when there is one."""
    if not name:
        return ""
    try:
        clients.client("elb").describe_load_balancers(LoadBalancerNames=[name])
    except ClientError:
        return ""
    return (
        f" There is a Classic Load Balancer named {name!r}: the assignment needs an "
        "Application Load Balancer (FAQ 6); create one."
    )
