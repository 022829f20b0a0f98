"""Names and numbers shared by every part of infra/: tags, ports, the stack's defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

PROJECT = "seed-lb"
# The stack deploy-aws builds when none is named. The local testbed's default is another
# name (infra.local.runtime.DEFAULT_TESTBED_STACK), so the two never share a state file.
DEFAULT_STACK = "seed-lb"

# Every resource carries both tags; that is how it is found again (never by a remembered id).
TAG_PROJECT = "Project"
TAG_STACK = "Stack"

APP_PORT = 5000  # the port the app listens on, on every instance (the seed's step 2)
LISTENER_PORT = 80  # the load balancer's HTTP listener
HEALTH_CHECK_PATH = "/health"

# Where deploy writes what it built, for status, grade and doctor: .state/<stack>.json
STATE_DIR = ".state"

STACK_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,19}$")

# Set by the test suite and the local testbed: AWS calls and grades go to loopback only.
LOOPBACK_ONLY_ENV = "SEEDLB_LOOPBACK_ONLY"


def loopback_only() -> bool:
    return os.environ.get(LOOPBACK_ONLY_ENV) == "1"


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1, localhost and *.localhost: never leaves this machine."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stack_tags(stack: str, name: str | None = None) -> list[dict[str, str]]:
    """The tags that make a resource the stack's, and its Name tag when given."""
    tags = [{"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_STACK, "Value": stack}]
    return [*tags, {"Key": "Name", "Value": name}] if name is not None else tags


def stack_filters(stack: str) -> list[dict]:
    """EC2 describe filters that select this stack's resources."""
    return [
        {"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]},
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]},
    ]


def name_tag(resource: dict) -> str | None:
    """The value of an EC2 resource's Name tag, if it has one."""
    for tag in resource.get("Tags") or []:
        if tag["Key"] == "Name":
            return tag["Value"]
    return None


def success_codes_include(matcher: str, status: int) -> bool:
    """Does a target group's success-code matcher ("200", "200,302", "200-299") include
    `status`? (The doctor reads it; the testbed's health checks apply it.)"""
    for part in str(matcher).replace(" ", "").split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (high or low).isdigit() and int(low) <= status <= int(high or low):
            return True
    return False


# --- Provisioning settings (infra/aws/stack.py) ---------------------------------------------

# Amazon Linux 2023's public SSM parameters: always the current AMI of the region, one per
# architecture. The instance type decides which: an arm64 type (t4g) boots the arm64 AMI
# (the app's compiled wheels, granian's and markupsafe's, exist for cp311 aarch64 and are
# hash-pinned in requirements.lock).
AMI_PARAMETER_PATH = "/aws/service/ami-amazon-linux-latest"
AMI_PARAMETERS = {arch: f"{AMI_PARAMETER_PATH}/al2023-ami-kernel-default-{arch}"
                  for arch in ("x86_64", "arm64")}
AMI_PARAMETER = AMI_PARAMETERS["x86_64"]
# Which types are free-tier eligible is EC2's answer for the account (DescribeInstanceTypes,
# free-tier-eligible=true). Among the eligible ones, these come first, in this order; the
# rest follow by size. Without any eligible type, the first of these that is offered is used.
PREFERRED_TYPES = ("t3.micro", "t2.micro")
# AWS Academy Learner Lab (its README's EC2 section): us-east-1 and us-west-2 only, instance
# sizes nano to large, at most 9 instances running at once. Its role is named voclabs.
LEARNER_LAB_REGIONS = ("us-east-1", "us-west-2")
LEARNER_LAB_SIZES = ("nano", "micro", "small", "medium", "large")
LEARNER_LAB_MAX_INSTANCES = 9
LEARNER_LAB_ROLE = ":assumed-role/voclabs/"
# Seconds the load balancer keeps sending in-flight requests to a deregistered target. AWS's
# default is 300; this app answers in milliseconds, and 300 s slows every replacement.
DEREGISTRATION_DELAY = 5


@dataclass
class Settings:
    """The knobs of one stack. Defaults build the seed's setup; tests shrink the waits."""

    stack: str = DEFAULT_STACK
    instance_count: int = 2
    instance_type: str | None = None  # None: a free-tier-eligible type, EC2's answer
    app_port: int = APP_PORT
    listener_port: int = LISTENER_PORT
    # Health check tuned so that targets turn healthy in ~10 s, not AWS's default 2.5 min.
    health_check_path: str = HEALTH_CHECK_PATH
    health_check_interval: int = 5
    health_check_timeout: int = 3
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    health_check_matcher: str = "200"
    # Who may reach port 5000 directly: "me" (the deployer's IP, looked up on real AWS only),
    # "any" (0.0.0.0/0), or an explicit CIDR.
    public_access: str = "me"
    key_name: str | None = None  # SSH (22) is opened, from the deployer's IP, only with a key
    use_default_vpc: bool = False
    vpc_cidr: str = "10.42.0.0/16"
    state_dir: str = STATE_DIR
    user_data: str | None = None  # None: infra.aws.userdata renders it
    # Waiter pacing: AWS's own defaults are 15 s; emulators answer at once.
    waiter_delay: float = 5.0
    waiter_timeout: float = 900.0
    # Bounded retries for what no waiter covers (SG DependencyViolation, TG ResourceInUse).
    dependency_retry_delay: float = 5.0
    dependency_retry_budget: float = 600.0
    # Bounded retry for an id EC2 does not show yet, right after it was created.
    consistency_retry_delay: float = 1.0
    consistency_retry_budget: float = 120.0
    deregistration_delay: int = DEREGISTRATION_DELAY
    wait_for_healthy: bool = True

    @property
    def lb_name(self) -> str:
        return f"{self.stack}-alb"

    @property
    def tg_name(self) -> str:
        return f"{self.stack}-tg"

    def name(self, role: str) -> str:
        """The Name tag of a resource with this role, e.g. seed-lb-vpc."""
        return f"{self.stack}-{role}"

    @classmethod
    def fast(cls, **overrides) -> Settings:
        """Settings for emulators (moto, LocalStack): waits poll every few milliseconds."""
        base = {
            "waiter_delay": 0.05,
            "waiter_timeout": 60.0,
            "dependency_retry_delay": 0.01,
            "dependency_retry_budget": 5.0,
            "consistency_retry_delay": 0.01,
            "consistency_retry_budget": 5.0,
        }
        base.update(overrides)
        return cls(**base)
