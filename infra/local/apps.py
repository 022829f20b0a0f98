"""The testbed's instances as app processes: one `python -m app` per instance, each on a
loopback address of its own, started as the user data starts it on EC2, and crashed or
started again on demand (`local kill-instance`, `local start-instance`, the failover drill).

Booted instances (`--machines`) have infra/local/machines/backend.py instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from infra.config import APP_PORT
from infra.errors import UserError
from infra.local import boot
from infra.local.mirror import StackView
from infra.local.processes import (
    ProcessGroup,
    address_bindable,
    alive,
    ensure_port_free,
    is_ours,
    log_tail,
    wait_until,
)
from infra.local.runtime import Meta, app_process_name, child_env, health_ok, split_address

APP_READY_TIMEOUT = 20.0


class AppProcesses:
    """The app processes of one testbed: where each listens, and its seed file."""

    def __init__(self, processes: ProcessGroup, runtime_dir: Path,
                 progress: Callable[[str], None]):
        self.processes = processes
        self.runtime_dir = runtime_dir
        self.progress = progress

    def start_all(self, meta: Meta, view: StackView, ec2, first_address: str,
                  instance_port: int | None, hint: Callable[[str], str]) -> None:
        """One app process per instance, each on its own loopback address; `hint(address)`
        says how to start the testbed on other addresses when one is taken."""
        meta.instances = assign_addresses(view, first_address, instance_port)
        # An instance without a route to the internet could not install the app at boot.
        meta.not_started = boot.boot_problems(ec2, list(meta.instances))
        for instance_id, why in meta.not_started.items():
            self.progress(f"instance {instance_id}: app not started: {why}")
        booting = {i: a for i, a in meta.instances.items() if i not in meta.not_started}
        for instance_id, address in booting.items():
            ensure_port_free(*split_address(address), f"instance {instance_id}'s address",
                             hint(_other_block(first_address)))
        self.progress(f"instances: starting {len(booting)} app processes "
                      f"({', '.join(booting.values())})")
        spawned = time.monotonic()
        procs = {iid: self.spawn(iid, addr, meta.app_env) for iid, addr in booting.items()}
        for instance_id, proc in procs.items():  # they start together; wait for each
            self.wait_ready(instance_id, booting[instance_id], proc)
        meta.app_ready_seconds = round(time.monotonic() - spawned, 2)

    def seed_file(self, instance_id: str) -> Path:
        return self.runtime_dir / "seeds" / f"{instance_id}.seed"

    def spawn(self, instance_id: str, address: str,
              app_env: dict[str, str]) -> subprocess.Popen:
        host, port = address.rsplit(":", 1)
        self.seed_file(instance_id).parent.mkdir(parents=True, exist_ok=True)
        env = child_env(**app_env)
        env.update(INSTANCE_ID=instance_id, SEED_FILE=str(self.seed_file(instance_id)))
        # The production command, as the user data runs it on an instance.
        argv = [sys.executable, "-m", "app", "--host", host, "--port", port]
        proc, _record = self.processes.start(app_process_name(instance_id), argv, env=env)
        return proc

    def wait_ready(self, instance_id: str, address: str, proc: subprocess.Popen) -> None:
        wait_until(lambda: proc.poll() is not None or health_ok(address), APP_READY_TIMEOUT,
                   0.1)
        if proc.poll() is not None or not health_ok(address):
            record = self.processes.record(app_process_name(instance_id))
            state = f"exited with code {proc.returncode}" if proc.poll() is not None else (
                f"did not answer GET /health within {APP_READY_TIMEOUT:.0f} s"
            )
            raise UserError(
                f"instance {instance_id}'s app ({address}) {state} at start-up; "
                f"the last lines of its log ({record.log if record else '?'}):\n"
                f"{log_tail(record.log) if record else ''}"
            )

    def running(self, instance_id: str) -> bool:
        record = self.processes.record(app_process_name(instance_id))
        return bool(record and is_ours(record))

    def kill(self, instance_id: str) -> None:
        """SIGKILL the instance's app (its whole process group): a crash, not a shutdown."""
        record = self.processes.record(app_process_name(instance_id))
        if record is None or not is_ours(record):
            raise UserError(f"instance {instance_id}'s app is not running")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
        wait_until(lambda: not alive(record.pid), 5.0)

    def start(self, instance_id: str, address: str, app_env: dict[str, str]) -> None:
        """Start the instance's app again, with the same SEED_FILE and address."""
        record = self.processes.record(app_process_name(instance_id))
        if record is not None and is_ours(record):
            raise UserError(f"instance {instance_id}'s app is already running (pid {record.pid})")
        ensure_port_free(*split_address(address), f"instance {instance_id}'s address",
                         "Stop what uses it.")
        self.wait_ready(instance_id, address, self.spawn(instance_id, address, app_env))


def assign_addresses(view: StackView, first_address: str,
                     instance_port: int | None) -> dict[str, str]:
    """One loopback address per instance, in launch order, on the target group's port."""
    port = instance_port or view.target_port or APP_PORT
    prefix, last = first_address.rsplit(".", 1)
    if address_bindable(first_address):
        ids = view.instance_ids
        return {iid: f"{prefix}.{int(last) + i}:{port}" for i, iid in enumerate(ids)}
    # macOS: only 127.0.0.1 without aliases, so one port per instance instead.
    return {iid: f"127.0.0.1:{port + 1 + i}" for i, iid in enumerate(view.instance_ids)}


def _other_block(first: str) -> str:
    """A first address 256 further on: a block of loopback addresses clear of this one."""
    return str(ipaddress.IPv4Address(first) + 256)
