"""The real-AWS rules that moto does not enforce, checked before anything is created.

moto happily builds a load balancer in one subnet, a target group named with underscores or a
health check timeout longer than its interval; real AWS refuses them half-way through a
deploy. Every such rule is checked here first, so a bad deploy fails in seconds with one line
and nothing to clean up.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from infra.aws.clients import LOOPBACK_ONLY_ENV, Clients
from infra.config import FREE_TIER_TYPES, STACK_NAME_RE, Settings
from infra.errors import UserError

# Load balancer and target group names: at most 32 letters, digits or hyphens, and no
# hyphen at either end (ELBv2's own rule).
ELB_NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$")

# Where the deployer's own public IP comes from, on real AWS only (AWS's own service).
CHECKIP_URL = "https://checkip.amazonaws.com"


@dataclass(frozen=True)
class Placement:
    """Where the instances go: a type both AZs offer, and the two AZs."""

    instance_type: str
    zones: tuple[str, str]


def check_settings(settings: Settings) -> None:
    """Rules on the settings alone: no AWS call."""
    if not STACK_NAME_RE.match(settings.stack):
        raise UserError(
            f"bad stack name {settings.stack!r}: use 1-20 letters, digits or hyphens, "
            "starting with a letter (e.g. --stack seed-lb)"
        )
    for kind, name in (("load balancer", settings.lb_name), ("target group", settings.tg_name)):
        if not ELB_NAME_RE.match(name):
            raise UserError(
                f"{kind} name {name!r} is not valid on AWS (at most 32 letters, digits or "
                "hyphens, no hyphen at either end): choose another --stack"
            )
    if name_starts_internal(settings.lb_name):
        raise UserError("a load balancer name may not start with 'internal-': change --stack")
    if settings.stack.lower().startswith("sg-"):
        # Security group names are <stack>-lb-sg; AWS refuses names that look like an id.
        raise UserError("a stack name may not start with 'sg-' (AWS refuses such security "
                        "group names): change --stack")
    if settings.instance_count < 1:
        raise UserError(
            f"instance count {settings.instance_count} is below 1: use --count 1 or more"
        )
    if settings.instance_count > 10:
        raise UserError(f"instance count {settings.instance_count} is above 10: use 1 to 10")
    for label, port in (("app port", settings.app_port), ("listener port", settings.listener_port)):
        if not 1 <= port <= 65535:
            raise UserError(f"{label} {port} is not a TCP port (1-65535)")
    _check_health_check(settings)
    public_cidr_choice(settings.public_access)  # raises on a bad value


def name_starts_internal(name: str) -> bool:
    return name.lower().startswith("internal-")


def _check_health_check(s: Settings) -> None:
    """AWS's ranges for an HTTP target group's health check."""
    rules = [
        (5 <= s.health_check_interval <= 300, "interval must be 5-300 seconds"),
        (2 <= s.health_check_timeout <= 120, "timeout must be 2-120 seconds"),
        (s.health_check_timeout < s.health_check_interval, "timeout must be below the interval"),
        (2 <= s.healthy_threshold <= 10, "healthy threshold must be 2-10"),
        (2 <= s.unhealthy_threshold <= 10, "unhealthy threshold must be 2-10"),
        (s.health_check_path.startswith("/") and len(s.health_check_path) <= 1024,
         "path must start with / (at most 1024 characters)"),
        (_matcher_ok(s.health_check_matcher), "matcher must be HTTP codes within 200-499"),
    ]
    for ok, rule in rules:
        if not ok:
            raise UserError(f"health check: {rule}")


def _matcher_ok(matcher: str) -> bool:
    """"200", "200,302" or "200-299", every code within 200-499."""
    try:
        for part in matcher.split(","):
            bounds = [int(x) for x in part.split("-")]
            if len(bounds) > 2 or not all(200 <= b <= 499 for b in bounds):
                return False
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                return False
    except ValueError:
        return False
    return True


def public_cidr_choice(value: str) -> str | None:
    """"me" -> None (look it up), "any" -> 0.0.0.0/0, else a CIDR, checked."""
    if value == "me":
        return None
    if value == "any":
        return "0.0.0.0/0"
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise UserError(
            f"--public-access {value!r} is neither 'me', 'any' nor a CIDR like 203.0.113.7/32"
        ) from None


def check_region(region: str | None) -> str:
    if not region:
        raise UserError(
            "no AWS region set: pass --region (e.g. --region us-east-1) or set AWS_REGION"
        )
    if region not in known_regions():
        raise UserError(f"unknown AWS region {region!r}: use one like us-east-1 or eu-west-1")
    return region


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore knows for EC2, in every partition (loaded once: it is slow)."""
    session = boto3.session.Session()
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(known)


def check_credentials(clients: Clients) -> str:
    """The account id, or one line saying why there is none."""
    if clients.session.get_credentials() is None:
        raise UserError(
            "no AWS credentials found: run `aws configure` (or set AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and try again"
        )
    try:
        return clients.sts.get_caller_identity()["Account"]
    except NoCredentialsError:
        raise UserError("no AWS credentials found: run `aws configure` and try again") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise UserError(
            f"AWS refused the credentials ({err.get('Code')}: {err.get('Message')}): "
            "check AWS_PROFILE / your access keys, or refresh your session"
        ) from None
    except BotoCoreError as exc:
        where = clients.target.endpoint_url or "AWS"
        raise UserError(f"cannot reach {where} ({exc}): check AWS_ENDPOINT_URL and the network") \
            from None


# What LocalStack answers for a service outside its plan: HTTP 501 and this kind of message.
_NOT_AVAILABLE_HINTS = ("not yet implemented", "pro feature", "license", "not included")


def check_elbv2_available(clients: Clients) -> None:
    """LocalStack's free tier has EC2 but no ELBv2: say so before creating anything."""
    try:
        clients.elbv2.describe_load_balancers(PageSize=1)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(err.get("Message") or "")
        if status == 501 or err.get("Code") in ("InternalFailure", "NotImplemented") or any(
            hint in message.lower() for hint in _NOT_AVAILABLE_HINTS
        ):
            where = clients.target.endpoint_url or "AWS"
            raise UserError(
                f"the endpoint {where} has no Elastic Load Balancing v2 (LocalStack's free tier "
                "lacks it). Either run LocalStack's licensed image with your token "
                "(`LOCALSTACK_AUTH_TOKEN=... docker compose -f docker-compose.localstack.yml up -d "
                "--wait localstack-pro`), or use the moto "
                "backend: start `.venv/bin/moto_server -p 5001` and run "
                "`AWS_ENDPOINT_URL=http://127.0.0.1:5001 make deploy-aws`"
            ) from None
        raise


def choose_placement(clients: Clients, settings: Settings, zones: list[str] | None = None) \
        -> Placement:
    """Two AZs that both offer the instance type; the type is the first free-tier one offered.

    `zones` narrows the choice (the default VPC's subnets' AZs); otherwise every available AZ
    of the region is a candidate.
    """
    ec2 = clients.ec2
    if zones is None:
        found = ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]},
                     {"Name": "zone-type", "Values": ["availability-zone"]}]
        )["AvailabilityZones"]
        zones = sorted(z["ZoneName"] for z in found)
    candidates = [settings.instance_type] if settings.instance_type else list(FREE_TIER_TYPES)
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": candidates},
                 {"Name": "location", "Values": zones}],
    )["InstanceTypeOfferings"]
    for itype in candidates:
        where = sorted({o["Location"] for o in offered if o["InstanceType"] == itype})
        if len(where) >= 2:
            return Placement(itype, (where[0], where[1]))
    raise UserError(
        f"no two Availability Zones among {', '.join(zones) or '(none)'} offer "
        f"{' or '.join(candidates)}: an ALB needs subnets in two AZs. Try another --region"
        + ("" if settings.instance_type is None else " or --instance-type")
    )


def check_key_pair(clients: Clients, key_name: str) -> None:
    """A missing key pair would fail run_instances half-way through a deploy."""
    try:
        clients.ec2.describe_key_pairs(KeyNames=[key_name])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
            raise
        raise UserError(
            f"no EC2 key pair named {key_name!r} in this region: create or import it "
            "(EC2 console > Key pairs), or drop --key-name"
        ) from None


def deployer_cidr(clients: Clients) -> str:
    """The deployer's own public IP as a /32, from AWS's checkip service.

    Only ever called against real AWS: never against an emulator, never in tests (which send
    nothing off this machine).
    """
    if clients.target.is_emulator or os.environ.get(LOOPBACK_ONLY_ENV) == "1":
        raise RuntimeError("deployer_cidr must not run against an emulator or in tests")
    import requests

    try:
        reply = requests.get(CHECKIP_URL, timeout=5)
        reply.raise_for_status()
        ip = ipaddress.ip_address(reply.text.strip())
    except (requests.RequestException, ValueError) as exc:
        raise UserError(
            f"could not look up your public IP at {CHECKIP_URL} ({exc}): pass "
            "--public-access <your-ip>/32, or --public-access any to open port 5000 to everyone"
        ) from None
    return f"{ip}/{ip.max_prefixlen}"
