"""The local control plane: a moto server on a free loopback port, started as a subprocess so
that it outlives `python -m infra local up`.

It runs with infra.local.motohook installed, so that DescribeTargetHealth reports the health
checks the supervisor makes (table: `health_table(runtime_dir)`), not moto's constant
`healthy`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from infra.errors import UserError
from infra.local.motohook import TABLE_ENV
from infra.local.processes import ProcessGroup, held_port, log_tail, wait_until

NAME = "moto"
HOST = "127.0.0.1"
# moto imports all of its services on the first request; the 2-core box is slow.
READY_TIMEOUT = 20.0
HEALTH_TABLE = "target-health.json"


def health_table(runtime_dir: str | Path) -> Path:
    """Where the supervisor writes target health and the moto hook reads it."""
    return Path(runtime_dir).resolve() / HEALTH_TABLE


def endpoint_for(port: int) -> str:
    return f"http://{HOST}:{port}"


def responds(endpoint: str, timeout: float = 1.0) -> bool:
    """Any HTTP answer means the server is up (moto answers / with its own 404)."""
    try:
        requests.get(f"{endpoint}/moto-api/", timeout=timeout)
    except requests.RequestException:
        return False
    return True


def is_moto(endpoint: str, timeout: float = 1.0) -> bool:
    """True if moto itself answers on `endpoint`, not some other server on its port."""
    try:
        answer = requests.get(f"{endpoint}/moto-api/", timeout=timeout)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and "<title>Moto" in answer.text


def start(processes: ProcessGroup, env: dict[str, str], port: int | None = None,
          table: str | Path | None = None) -> str:
    """Start moto on `port` (a free one, held until moto binds it, if None), wait until it
    answers, return its endpoint.

    `table`: where the hook reads target health (default: the runtime dir's table; a glob
    for a server shared by several testbeds)."""
    if port is None:
        with held_port(HOST) as free:
            return start(processes, env, free, table)
    argv = [sys.executable, "-m", "infra.local.motohook", "-H", HOST, "-p", str(port)]
    if table is None:
        table = health_table(processes.runtime_dir)
        table.unlink(missing_ok=True)  # a previous run's table: its ARNs went with its moto
    proc, record = processes.start(NAME, argv, env={**env, TABLE_ENV: str(table)})
    endpoint = endpoint_for(port)
    # Moto's own answer: a server already on the port answers too, while moto fails to bind.
    ready = wait_until(lambda: proc.poll() is not None or is_moto(endpoint), READY_TIMEOUT, 0.1)
    if proc.poll() is not None or not ready:
        processes.stop(NAME)
        state = f"exited with code {proc.returncode}" if proc.poll() is not None else "not ready"
        raise UserError(
            f"the moto server on {endpoint} {state} after start; its log ({record.log}):\n"
            f"{log_tail(record.log)}"
        )
    return endpoint
