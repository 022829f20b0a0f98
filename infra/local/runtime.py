"""A testbed's names and its runtime file: what every part of the testbed reads to find the
processes of a running testbed again (`<runtime>/testbed.json`), and the defaults of
`local up`."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import requests

from infra.errors import UserError
from infra.local.processes import same_process

# The local testbed's stack when none is named: not config.DEFAULT_STACK ("seed-lb", what
# deploy-aws builds), so that a testbed never shares a state file with a real stack.
DEFAULT_TESTBED_STACK = "seed-lb-local"
DEFAULT_LB_PORT = 8080
DEFAULT_REGION = "us-east-1"
FIRST_ADDRESS = "127.0.0.11"  # then .12, ...: one loopback address per instance, port 5000
RUNTIME_ROOT = ".local"
META_FILE = "testbed.json"
SUPERVISOR = "supervisor"  # its process's name; what it last did is in SUPERVISOR_STATUS
SUPERVISOR_STATUS = "supervisor.json"
PROCESSES, MACHINES = "processes", "machines"  # what an instance is (infra/local/machines)


def app_process_name(instance_id: str) -> str:
    return f"app-{instance_id}"


@dataclass
class Meta:
    """What this testbed started, written to `<runtime>/testbed.json`: where to find its
    processes again. Not a description of the stack: that stays in the control plane."""

    stack: str
    mode: str  # "up" (left running on purpose) or "test" (owned by a running `local test`)
    owner_pid: int
    owner_started: str = ""  # the owner's start token: its pid alone may be reused
    endpoint: str = ""
    region: str = DEFAULT_REGION
    lb: str = ""
    admin: str = ""
    state_file: str = ""
    instances: dict[str, str] = field(default_factory=dict)  # instance id -> "host:port"
    app_env: dict[str, str] = field(default_factory=dict)  # extra app environment, if any
    app_ready_seconds: float = 0.0  # how long the apps took to answer at start-up
    # instance id -> why its app was never started (its first boot could not install it)
    not_started: dict[str, str] = field(default_factory=dict)
    backend: str = PROCESSES  # instances as app processes, or booted machines

    def owner_running(self) -> bool:
        """The command that started this testbed is still running (not this process)."""
        return self.owner_pid != os.getpid() and same_process(self.owner_pid, self.owner_started)

    @classmethod
    def load(cls, path: Path) -> Meta | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)


class StartRefused(UserError):
    """`up` would not start, and touched nothing: a testbed of this stack runs, a port is
    taken, Caddy is missing. Nothing to clean up after it."""


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an app process: no AWS credentials, as on an instance without a role."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def check_loopback(address: str, what: str) -> None:
    """Instances must stay on this machine's loopback: never bind an app to a real interface."""
    try:
        ok = ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"{what} {address!r} must be an IPv4 loopback address (127.x.y.z)")


def health_ok(address: str, timeout: float = 1.0) -> bool:
    """The app at "host:port" answers GET /health with 200."""
    try:
        return requests.get(f"http://{address}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
