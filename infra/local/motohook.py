"""Real target health in the testbed's moto server: a hook inside moto's own process.

moto answers `DescribeTargetHealth` with `healthy` for every registered, running target: it
never probes. The testbed runs moto as `python -m infra.local.motohook` instead of
`python -m moto.server`; this installs one override, then starts moto's server unchanged.
The override takes each target's state from a table (a JSON file) that the testbed's
supervisor writes from its own health checks, which follow the target group's settings:

    {"target_groups": {"<tg arn>": {"<instance id>:<port>": {"State": "unhealthy",
        "Reason": "Target.Timeout", "Description": "Request timed out"}, ...}}}

- moto's own answers stand where they already say what AWS says: `unused` for a
  deregistered or stopped instance (Target.NotRegistered, Target.InvalidState), `draining`
  for a terminated one.
- A target group no listener forwards to is `unused` (Target.NotInUse), as on AWS.
- A target group in the table: each target's entry; a target registered since the table
  was written is `initial` (Elb.RegistrationInProgress).
- A target group not in the table (no testbed manages it): moto's answer.

States, reasons and their meaning: botocore's elbv2 service model, shape TargetHealth.

A second override gives `GetConsoleOutput` the instance's real console when it is a booted
machine (infra/local/machines): the file `machines/<instance id>/console.log` beside the
table, its last 64 KB, base64-encoded as EC2 returns it (botocore's ec2 model,
GetConsoleOutputResult.Output), with the time it was last written. An instance with no
console there (an app process, or a machine not booted yet) answers with no Output, as EC2
does before an instance has posted any; moto's fixed sample console is never returned.

It reaches into moto's internals (`FakeTargetGroup.health_for`, `FakeHealthStatus`, the
backend's listeners), so it is pinned to the moto version in requirements.lock:
`check_internals()` fails loudly at start-up when they moved, and
tests/local/test_motohook.py runs the same check and the hook itself in `make test`.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import inspect
import json
import os
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

TABLE_ENV = "SEEDLB_TARGET_HEALTH"  # the table's path, given to the moto process
CONSOLE_LIMIT = 64 * 1024  # EC2 keeps the most recent 64 KB of an instance's console
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
PINNED_MOTO = "5.2.5"  # the version whose internals this module was written against

REGISTRATION = ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
NOT_IN_USE = ("unused", "Target.NotInUse",
              "Target group is not configured to receive traffic from the load balancer")


# --- the table (written by the supervisor, read here) ----------------------------------------
def target_key(target_id: str, port) -> str:
    return f"{target_id}:{port}"


def write_table(path: str | Path, target_groups: dict[str, dict[str, dict]]) -> None:
    """Replace the table atomically: moto never reads half a file."""
    path = Path(path)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"target_groups": target_groups}))
    tmp.replace(path)


def read_table(path: str | Path) -> dict[str, dict[str, dict]]:
    try:
        return dict(json.loads(Path(path).read_text()).get("target_groups") or {})
    except (OSError, ValueError, AttributeError):
        return {}


class _Table:
    """The table as moto's threads see it: re-read when the file changes.

    The path may be a glob (`.../lanes/*/target-health.json`): one moto server shared by
    several testbeds (`local faults`) reads each one's table; target group ARNs are unique.
    """

    def __init__(self, path: str | None):
        self.path = path
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple, dict]] = {}  # path -> (stamp, target groups)

    def groups(self) -> dict[str, dict[str, dict]]:
        if not self.path:
            return {}
        paths = sorted(glob.glob(self.path)) if glob.has_magic(self.path) else [self.path]
        merged: dict[str, dict[str, dict]] = {}
        with self._lock:
            for path in paths:
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
                cached = self._files.get(path)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, read_table(path))
                    self._files[path] = cached
                merged.update(cached[1])
        return merged


# --- the hook -------------------------------------------------------------------------------
class MotoInternalsMoved(RuntimeError):
    pass


def check_internals() -> None:
    """Everything the hook touches, as moto PINNED_MOTO has it; raises MotoInternalsMoved."""
    import moto
    from moto.elbv2 import models

    problems = []
    if moto.__version__ != PINNED_MOTO:
        problems.append(f"moto is {moto.__version__}, the hook was written for {PINNED_MOTO}")
    health_for = getattr(models.FakeTargetGroup, "health_for", None)
    if health_for is None:
        problems.append("FakeTargetGroup.health_for is gone")
    elif list(inspect.signature(health_for).parameters) != ["self", "target", "ec2_backend"]:
        problems.append(f"FakeTargetGroup.health_for{inspect.signature(health_for)} changed")
    status_params = list(inspect.signature(models.FakeHealthStatus).parameters)
    if status_params != ["instance_id", "port", "health_port", "status", "reason",
                         "description"]:
        problems.append(f"FakeHealthStatus{inspect.signature(models.FakeHealthStatus)} changed")
    if not hasattr(models, "elbv2_backends"):
        problems.append("moto.elbv2.models.elbv2_backends is gone")
    # The attributes the hook reads, found in the source of the classes that set them.
    needles = {
        "FakeHealthStatus": ("self.instance_id", "self.port", "self.health_check_port",
                             "self.status"),
        "FakeTargetGroup": ("self.arn", "self.account_id", "self.region_name"),
        "FakeLoadBalancer": ("self.listeners",),
        "FakeListener": ("self.default_actions", "def rules"),
        "FakeRule": ("self.actions",),
        "FakeListenerRule": ("self.actions",),
        "FakeAction": ("self.data", "self.type"),
        "ELBv2Backend": ("self.load_balancers", "def _get_target_group_arns_from"),
    }
    for cls_name, wanted in needles.items():
        cls = getattr(models, cls_name, None)
        source = inspect.getsource(cls) if cls is not None else ""
        problems += [f"moto.elbv2.models.{cls_name} has no {needle!r}"
                     for needle in wanted if needle not in source]
    from moto.ec2.responses import general

    if not hasattr(general, "General") or not hasattr(general.General, "get_console_output"):
        problems.append("moto.ec2.responses.general.General.get_console_output is gone")
    else:
        source = inspect.getsource(general.General.get_console_output)
        problems += [f"General.get_console_output has no {needle!r}" for needle in (
            'self._get_param("InstanceId")', "self.ec2_backend.get_instance", "ActionResult")
            if needle not in source]
    if problems:
        raise MotoInternalsMoved(
            "infra/local/motohook.py cannot give moto real target health: "
            + "; ".join(problems)
            + ". Pin moto back to the version in requirements.lock, or adapt the hook "
            "(tests/local/test_motohook.py shows what it needs)."
        )


def _forwarded_arns(backend, actions) -> set[str]:
    arns: set[str] = set()
    for action in actions or []:
        if getattr(action, "type", None) == "forward":
            arns.update(backend._get_target_group_arns_from(action_data=action.data))
    return arns


def in_use(target_group) -> bool:
    """Does a listener (default action or rule) of any load balancer forward to it?

    moto keeps `FakeTargetGroup.load_balancer_arns` append-only, so ask the listeners.
    """
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[target_group.account_id][target_group.region_name]
    for lb in list(backend.load_balancers.values()):
        for listener in list(lb.listeners.values()):
            if target_group.arn in _forwarded_arns(backend, listener.default_actions):
                return True
            for rule in list(listener.rules.values()):
                if target_group.arn in _forwarded_arns(backend, rule.actions):
                    return True
    return False


def install(table_path: str | None = None) -> None:
    """Override FakeTargetGroup.health_for in this process (moto's server process)."""
    check_internals()
    from moto.elbv2 import models

    if getattr(models.FakeTargetGroup.health_for, "_seedlb_hook", False):
        return
    table = _Table(table_path if table_path is not None else os.environ.get(TABLE_ENV))
    original = models.FakeTargetGroup.health_for

    def health_for(self, target, ec2_backend):
        status = original(self, target, ec2_backend)
        if status.status != "healthy":
            return status  # moto already says unused / draining, as AWS would
        if not in_use(self):
            return models.FakeHealthStatus(status.instance_id, status.port,
                                           status.health_check_port, *NOT_IN_USE)
        entries = table.groups().get(self.arn)
        if entries is None:
            return status
        entry = entries.get(target_key(status.instance_id, status.port))
        if entry is None:
            return models.FakeHealthStatus(status.instance_id, status.port,
                                           status.health_check_port, *REGISTRATION)
        return models.FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port, entry["State"],
            entry.get("Reason"), entry.get("Description"),
        )

    health_for._seedlb_hook = True  # type: ignore[attr-defined]
    models.FakeTargetGroup.health_for = health_for


# --- the console ------------------------------------------------------------------------------
def console_file(table_path: str | None, instance_id: str) -> Path | None:
    """A booted machine's console beside the table (or beside any table of a glob)."""
    if not table_path or not _INSTANCE_ID.match(instance_id or ""):
        return None  # the id comes from a request: never a path of its own
    pattern = os.path.join(os.path.dirname(table_path), "machines", instance_id, "console.log")
    found = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
    existing = [Path(p) for p in found if os.path.isfile(p)]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def console_answer(path: Path | None, instance_id: str) -> dict:
    """GetConsoleOutput's result for a machine's console file (no Output when there is none)."""
    result: dict = {"InstanceId": instance_id}
    if path is None:
        result["Timestamp"] = datetime.now(UTC)
        return result
    with open(path, "rb") as console:
        size = console.seek(0, os.SEEK_END)
        console.seek(max(0, size - CONSOLE_LIMIT))
        data = console.read()
    result["Timestamp"] = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    if data:
        result["Output"] = base64.b64encode(data).decode("ascii")
    return result


def install_console(table_path: str | None = None) -> None:
    """Override GetConsoleOutput in this process (moto's server process)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import general

    if getattr(general.General.get_console_output, "_seedlb_hook", False):
        return
    path = table_path if table_path is not None else os.environ.get(TABLE_ENV)

    def get_console_output(self):
        instance_id = self._get_param("InstanceId")
        instance = self.ec2_backend.get_instance(instance_id)  # InvalidInstanceID.NotFound
        answer = console_answer(console_file(path, instance.id), instance.id)
        if "Output" in answer:
            from moto.ec2.utils import Base64EncodedString

            answer["Output"] = Base64EncodedString(answer["Output"])
        return ActionResult(answer)

    get_console_output._seedlb_hook = True  # type: ignore[attr-defined]
    general.General.get_console_output = get_console_output


def main(argv: list[str] | None = None) -> None:
    """`python -m infra.local.motohook -H HOST -p PORT`: moto's server, with the hook."""
    try:
        install()
        install_console()
    except MotoInternalsMoved as exc:
        print(exc, file=sys.stderr, flush=True)
        sys.exit(3)
    from moto.server import main as moto_main

    with contextlib.suppress(KeyboardInterrupt):
        moto_main(argv)


if __name__ == "__main__":
    main()
