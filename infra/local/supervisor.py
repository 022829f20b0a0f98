"""Keeps the local load balancer a mirror of the control plane: every second it reads the
stack back from moto and, when the registered targets, the listener or the health check
changed, pushes a new config through Caddy's admin API (no restart).

Runs as `python -m infra.local.supervisor` in the background, started by the testbed (on its own,
not through the CLI, so that it depends on nothing else); it exits by itself when the
testbed's runtime file goes away or moto stops answering.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infra.local import motoserver, proxy

POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 30.0  # moto gone for this long: the testbed is gone too


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run(testbed, poll: float = POLL_SECONDS) -> int:
    """The loop; `testbed` is an infra.local.testbed.Testbed attached to a running testbed."""
    status_path = Path(testbed.runtime_dir) / "supervisor.json"
    last_ok = time.monotonic()
    pushed: dict | None = None
    while True:
        meta = testbed.meta
        if meta is None:
            _log("the testbed's runtime file is gone: exiting")
            return 0
        if not meta.admin:  # the testbed has not started Caddy yet
            time.sleep(poll / 4)
            continue
        caddy = proxy.Caddy(meta.admin, testbed.runtime_dir)
        try:
            view = testbed.read_stack()
            desired = testbed.proxy_config(view, meta)
            if desired != pushed:
                # Compare with what Caddy runs, so a fresh supervisor does not reload (a reload
                # resets Caddy's health state) when nothing changed.
                if caddy.config() != desired:
                    before = proxy.upstreams_of(pushed) if pushed else "(initial)"
                    caddy.load(desired)
                    _log(f"targets {before} -> {proxy.upstreams_of(desired)}: config pushed")
                pushed = desired
            last_ok = time.monotonic()
            _write_status(status_path, view, desired)
        except Exception as exc:  # moto or Caddy briefly unavailable: keep polling
            _log(f"sync failed: {type(exc).__name__}: {exc}")
            if not motoserver.responds(meta.endpoint) and (
                time.monotonic() - last_ok > GIVE_UP_SECONDS
            ):
                _log("moto has not answered for a while: exiting")
                return 1
        time.sleep(poll)


def _write_status(path: Path, view, config: dict) -> None:
    status = {
        "synced_at": time.time(),
        "upstreams": proxy.upstreams_of(config),
        "control_plane": {t.id: t.state for t in view.targets},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.supervisor",
        description="keep a local testbed's Caddy in step with its control plane (internal)",
    )
    parser.add_argument("--stack", required=True)
    parser.add_argument("--runtime-dir", required=True)
    args = parser.parse_args(argv)
    from infra.local.testbed import Testbed

    try:
        return run(Testbed(args.stack, runtime_dir=args.runtime_dir))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
