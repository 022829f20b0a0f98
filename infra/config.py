"""Names and numbers shared by every part of infra/: tags, ports, the stack's defaults."""

from __future__ import annotations

import re

PROJECT = "seed-lb"
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


def stack_tags(stack: str) -> list[dict[str, str]]:
    return [{"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_STACK, "Value": stack}]


def stack_filters(stack: str) -> list[dict]:
    """EC2 describe filters that select this stack's resources."""
    return [
        {"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]},
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]},
    ]
