"""Setup (c) and the failover drill, on the local testbed (infra/local.py)."""

from __future__ import annotations


def run_testbed_step(bench, wrk, work, settings, progress, measure) -> str | None:
    from infra.bench import Skip

    try:
        from infra.local import Testbed  # noqa: F401
    except ImportError as exc:
        raise Skip(f"the local testbed (infra.local) is not available: {exc}") from None
    raise Skip("testbed integration pending")
