"""The local testbed (infra/local/testbed.py) for setup (c) and the failover drill.

It is started the way `make test-local` starts it (moto server, `infra.aws.stack`, one
`python -m app` per instance, Caddy), but on free ports, on a loopback block of its own
and in the bench's temporary directory, so that it cannot meet a testbed someone else
is running on this machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from infra.bench.failover import FailoverResult, run_failover
from infra.local.processes import free_port, wait_until

STACK = "seedlb-bench"


class TestbedMissing(Exception):
    """infra.local is not there (yet): the steps that need it are skipped."""


@dataclass
class RunningTestbed:
    testbed: object  # infra.local.testbed.Testbed
    lb_url: str
    instances: dict[str, str]  # instance id (its X-Served-By) -> host:port
    health_window_s: float | None  # interval x unhealthy threshold of the target group


def _first_address() -> str:
    """127.X.Y.11: the testbed's default is 127.0.0.11, so stay clear of 127.0.*."""
    from infra.local.processes import address_bindable

    for _ in range(20):
        candidate = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.11"  # noqa: S311
        if address_bindable(candidate):
            return candidate
    return "127.0.0.11"


def _serving(lb_url: str, instance_ids: set[str], timeout: float) -> set[str]:
    """Ask the LB until every instance has answered once (Caddy's first health checks)."""
    seen: set[str] = set()

    def all_seen() -> bool:
        try:
            resp = requests.get(lb_url, timeout=2)
        except requests.RequestException:
            return False
        if resp.ok:
            seen.add(resp.headers.get("X-Served-By", ""))
        return instance_ids <= seen

    wait_until(all_seen, timeout, 0.02)
    return seen


@contextmanager
def running_testbed(work: Path, progress) -> Iterator[RunningTestbed]:
    try:
        from infra.local.testbed import Testbed
    except ImportError as exc:
        raise TestbedMissing(f"the local testbed (infra.local) is not available: {exc}") from None

    testbed = Testbed(
        STACK,
        lb_port=free_port(),
        runtime_dir=work / "testbed",
        state_dir=work / "testbed-state",
        first_address=_first_address(),
        instance_port=free_port(),
        progress=lambda message: progress(f"    {message}"),
        mode="test",
    )
    started = time.monotonic()
    try:
        testbed.up()
        lb_url = f"http://{testbed.lb_address}/"
        instances = testbed.instances
        seen = _serving(lb_url, set(instances), timeout=30)
        if not set(instances) <= seen:
            raise RuntimeError(f"only {sorted(seen)} answered through {lb_url} within 30s")
        health = testbed.read_stack().health
        window = health.interval * health.unhealthy if health is not None else None
        progress(f"  testbed serving after {time.monotonic() - started:.1f}s: {lb_url} -> "
                 f"{', '.join(f'{i} ({a})' for i, a in instances.items())}")
        yield RunningTestbed(testbed, lb_url, instances, window)
    finally:
        progress("  testbed: stopping")
        testbed.down()
        progress("  testbed: stopped")


def failover_drill(running: RunningTestbed, progress) -> FailoverResult:
    victim = next(iter(running.instances))
    testbed = running.testbed
    return run_failover(
        running.lb_url, victim,
        kill=lambda: testbed.kill_instance(victim),
        restart=lambda: testbed.start_instance(victim),
        health_window_s=running.health_window_s, progress=progress,
    )
