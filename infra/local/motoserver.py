"""The local control plane: a moto server on a free loopback port, started as a subprocess so
that it outlives `python -m infra local up`.
"""

from __future__ import annotations

import sys

import requests

from infra.errors import UserError
from infra.local.processes import ProcessGroup, free_port, log_tail, wait_until

NAME = "moto"
HOST = "127.0.0.1"
# moto imports all of its services on the first request; the 2-core box is slow.
READY_TIMEOUT = 20.0

def endpoint_for(port: int) -> str:
    return f"http://{HOST}:{port}"


def responds(endpoint: str, timeout: float = 1.0) -> bool:
    """Any HTTP answer means the server is up (moto answers / with its own 404)."""
    try:
        requests.get(f"{endpoint}/moto-api/", timeout=timeout)
    except requests.RequestException:
        return False
    return True


def start(processes: ProcessGroup, env: dict[str, str], port: int | None = None) -> str:
    """Start moto on `port` (a free one if None), wait until it answers, return its endpoint."""
    port = port or free_port(HOST)
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    proc, record = processes.start(NAME, argv, env=env)
    endpoint = endpoint_for(port)
    ready = wait_until(lambda: proc.poll() is not None or responds(endpoint), READY_TIMEOUT, 0.1)
    if proc.poll() is not None or not ready:
        processes.stop(NAME)
        state = f"exited with code {proc.returncode}" if proc.poll() is not None else "not ready"
        raise UserError(
            f"the moto server on {endpoint} {state} after start; its log ({record.log}):\n"
            f"{log_tail(record.log)}"
        )
    return endpoint
