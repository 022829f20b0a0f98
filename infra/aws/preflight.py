"""Everything a deploy needs, checked before anything is created, so that a mistake costs
nothing: one line, a non-zero exit, and no resource at all.

- The real-AWS rules that moto does not enforce: moto happily builds a load balancer in one
  subnet, a target group named with underscores or a health check timeout longer than its
  interval; real AWS refuses them half-way through a deploy.
- Region and credentials, before any client exists (`check_region`, `require_credentials`),
  then the account (STS GetCallerIdentity, with tight timeouts: no network answers in 5 s).
- The AMI (ssm:GetParameter), the instance type (placement.py: EC2's own free-tier answer,
  and two AZs that offer it), and RunInstances itself as a dry run (DryRunOperation means
  allowed): a denied permission shows here, not after the load balancer bills by the hour.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.aws import emulator, failures
from infra.aws.clients import Clients
from infra.config import (
    AMI_PARAMETERS,
    STACK_NAME_RE,
    Settings,
    is_loopback_host,
    loopback_only,
)
from infra.console import warn
from infra.errors import UserError

# Load balancer and target group names: at most 32 letters, digits or hyphens, and no
# hyphen at either end (ELBv2's own rule).
ELB_NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$")

# Where the deployer's own public IP comes from, on real AWS only (AWS's own service).
CHECKIP_URL = "https://checkip.amazonaws.com"


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
        raise UserError(failures.no_region_line())
    if region not in known_regions():
        raise UserError(f"unknown AWS region {region!r}: use one like us-east-1 or eu-west-1")
    return region


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore knows for EC2, in every partition (loaded once: it is slow).
    botocore's own data: no profile is read, so an emulator's run needs none."""
    session = boto3.session.Session(botocore_session=emulator.botocore_session_without_profile())
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(known)


def require_credentials(clients: Clients) -> None:
    """Credentials exist somewhere in boto3's chain (environment, profile, SSO cache). Sends
    nothing to AWS and builds no client; an SSO profile's credentials are fetched later."""
    try:
        found = clients.session.get_credentials()
    except BotoCoreError as exc:  # an SSO profile without a cached login, a broken profile
        raise failures.as_user_error(exc, "reading the credentials", exit_code=2) from None
    if found is None:
        raise UserError(failures.no_credentials_line())


# An emulator on this machine that refuses connections may be starting: README's recipe
# starts moto in the background and deploys at once, and moto takes a second to listen.
EMULATOR_START_WAIT = emulator.ANSWER_WAIT


def emulator_started(clients: Clients, wait: float = EMULATOR_START_WAIT) -> bool:
    """For a loopback emulator endpoint: wait until something listens on its port
    (emulator.wait_until_answers: longer while an emulator process for it is starting).
    False at once for any other endpoint."""
    if not clients.target.is_emulator:
        return False
    return emulator.wait_until_answers(clients.target.endpoint_url, wait, warn)


def emulator_answers(clients: Clients) -> None:
    """A stopped emulator on this machine: one line at once, not botocore's retries and a
    word about proxies (it is not the network)."""
    target = clients.target
    if target.is_emulator and is_loopback_host(target.endpoint_address[0]) \
            and not emulator_started(clients):
        raise UserError(emulator.not_answering(target.endpoint_url))


def check_credentials(clients: Clients) -> dict:
    """Who the credentials are (STS's Account and Arn), or one line saying why there is none:
    the first call of every command, with tight timeouts, so that no network answers within
    5 s."""
    require_credentials(clients)
    try:
        # An SSO profile's login is read here: an expired one is the first thing to say.
        clients.session.get_credentials().get_frozen_credentials()
        emulator_answers(clients)
        return clients.first_call_sts.get_caller_identity()
    except ClientError as exc:
        code = failures.code_of(exc)
        if code in failures.EXPIRED_TOKEN_CODES:
            raise UserError(failures.expired_session_line(code)) from None
        if code in failures.UNKNOWN_KEY_CODES:
            raise UserError(failures.unknown_keys_line(code)) from None
        err = exc.response.get("Error", {})
        raise UserError(
            f"AWS refused the credentials ({code}: {err.get('Message')}): check AWS_PROFILE "
            "or your access keys (`aws configure list`), or refresh your session"
        ) from None
    except BotoCoreError as exc:
        where = clients.target.endpoint_url or "AWS"
        if failures.explain(exc, "").startswith("cannot reach"):
            raise UserError(f"cannot reach {where} ({exc}): check the network (and a proxy or "
                            "VPN), or AWS_ENDPOINT_URL for an emulator") from None
        raise failures.as_user_error(exc, "checking the credentials", exit_code=2) from None


def check_elbv2_available(clients: Clients) -> None:
    """LocalStack's free code has EC2 but no ELBv2: say so before creating anything."""
    try:
        clients.elbv2.describe_load_balancers(PageSize=1)
    except ClientError as exc:
        if failures.is_service_missing(exc):
            raise UserError(failures.no_elbv2_line(clients.target.endpoint_url or "AWS")) \
                from None
        raise


def resolve_image(clients: Clients, architecture: str = "x86_64") -> str:
    """Amazon Linux 2023's current AMI in the region for this architecture, from its public
    SSM parameter."""
    parameter = AMI_PARAMETERS[architecture]
    try:
        return clients.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if failures.code_of(exc) != "ParameterNotFound":
            raise
        raise UserError(
            f"SSM has no parameter {parameter} in region {clients.target.region}: "
            "Amazon Linux 2023 is not published there; choose another --region"
        ) from None


# What RunInstances' dry run can answer when only the subnet is missing (the network does
# not exist before the deploy): the permission check came first and passed.
_DRY_RUN_NEEDS_NETWORK = ("VPCIdNotSpecified", "MissingInput", "InvalidSubnet",
                          "InvalidSubnetID.NotFound")


def check_launch_allowed(clients: Clients, params: dict) -> str | None:
    """RunInstances with DryRun=True: DryRunOperation means "would have succeeded"; a denied
    permission (UnauthorizedOperation) or a limit shows here, before anything exists.
    Returns a note when the dry run could not say (no default VPC to try it in)."""
    try:
        reply = clients.ec2.run_instances(**params, DryRun=True)
    except ClientError as exc:
        code = failures.code_of(exc)
        if code == "DryRunOperation":
            return None
        if code in _DRY_RUN_NEEDS_NETWORK:
            return (f"RunInstances' dry run needs a subnet ({code}): the launch permission "
                    "is checked for real when the instances launch")
        raise
    # Real EC2 never gets here; an emulator that ignores DryRun does: undo what it launched.
    ids = [i["InstanceId"] for i in reply.get("Instances", [])]
    if ids:
        clients.ec2.terminate_instances(InstanceIds=ids)
    return "the endpoint ignores RunInstances' DryRun: the launch permission was not checked"


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
    if clients.target.is_emulator or loopback_only():
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
