"""Failover through the local load balancer: kill an instance under a steady load, then
bring it back.

A steady load is a few threads, each sending `GET /` and pausing a few milliseconds: a
bounded, known rate rather than wrk's flood, so that each failure is one request a user
would have seen. Measured: the failed requests after the kill and the time until none
fail any more; after the restart, the time until the instance serves again (its
X-Served-By shows up in the answers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from infra.local.processes import wait_until


@dataclass
class FailoverSample:
    at: float  # time.monotonic() when the answer (or the error) came back
    ok: bool
    served_by: str | None
    status: int | None
    sent: float | None = None  # time.monotonic() when the request was sent (default: at)

    @property
    def sent_at(self) -> float:
        return self.at if self.sent is None else self.sent


@dataclass
class FailoverResult:
    victim: str
    requests: int = 0
    request_rate: float = 0.0  # per second, over the whole drill
    failed_after_kill: int = 0
    failing_for_s: float = 0.0  # from the kill to the last failed request
    failed_after_restart: int = 0
    rejoin_s: float | None = None  # from the restart to its first answer through the LB
    health_window_s: float | None = None  # interval x unhealthy threshold
    statuses: dict = field(default_factory=dict)
    # After the kill, per kind of failure ("502", "503", "no answer"): how many, and when
    # the last one was sent. A 502 is a request routed to the dead instance; other kinds
    # are the load balancer's own (e.g. Caddy's 503 "no upstreams available").
    failures_by_kind: dict = field(default_factory=dict)


class SteadyLoad:
    """`threads` loops of GET url / sleep(pause_s), recording every answer."""

    def __init__(self, url: str, threads: int = 2, pause_s: float = 0.005,
                 timeout_s: float = 2.0):
        self.url = url
        self.threads = threads
        self.pause_s = pause_s
        self.timeout_s = timeout_s
        self.samples: list[FailoverSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _loop(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    resp = session.get(self.url, timeout=self.timeout_s)
                    sample = FailoverSample(time.monotonic(), resp.status_code == 200,
                                    resp.headers.get("X-Served-By"), resp.status_code, sent)
                except requests.RequestException:
                    sample = FailoverSample(time.monotonic(), False, None, None, sent)
                with self._lock:
                    self.samples.append(sample)
                self._stop.wait(self.pause_s)

    def start(self) -> SteadyLoad:
        for n in range(self.threads):
            worker = threading.Thread(target=self._loop, name=f"steady-load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout_s + 1)

    def since(self, t: float) -> list[FailoverSample]:
        with self._lock:
            return [s for s in self.samples if s.at >= t]

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def summarize_recovery(samples: list[FailoverSample], killed_at: float) -> tuple[int, float]:
    """Failed requests after the kill, and seconds from the kill to the moment the last
    failing request was sent: when the load balancer stopped routing to the dead target
    (when its answer came back depends on how busy the machine is, not on the LB)."""
    failed = [s for s in samples if s.at >= killed_at and not s.ok]
    if not failed:
        return 0, 0.0
    return len(failed), max(0.0, max(s.sent_at for s in failed) - killed_at)


def failures_by_kind(samples: list[FailoverSample], killed_at: float) \
        -> dict[str, tuple[int, float]]:
    """Failed requests after the kill by status: (count, seconds to the last one sent)."""
    kinds: dict[str, tuple[int, float]] = {}
    for s in samples:
        if s.ok or s.at < killed_at:
            continue
        kind = str(s.status) if s.status is not None else "no answer"
        count, last = kinds.get(kind, (0, 0.0))
        kinds[kind] = (count + 1, max(last, s.sent_at - killed_at))
    return kinds


def run_failover(lb_url: str, victim: str, kill: Callable[[], None],
                 restart: Callable[[], None], *, health_window_s: float | None,
                 progress, quiet_s: float = 3.0, max_wait_s: float = 45.0,
                 threads: int = 2, pause_s: float = 0.005) -> FailoverResult:
    """`victim` is the X-Served-By value of the instance that `kill` stops."""
    result = FailoverResult(victim=victim, health_window_s=health_window_s)
    started = time.monotonic()
    with SteadyLoad(lb_url, threads=threads, pause_s=pause_s) as load:
        def seen() -> set[str | None]:
            return {s.served_by for s in load.since(started) if s.ok}

        if not wait_until(lambda: victim in seen(), 10):
            raise RuntimeError(f"{victim} never answered through {lb_url} before the kill "
                               f"(served by: {sorted(x for x in seen() if x)})")
        progress(f"  steady load on {lb_url}: served by {sorted(x for x in seen() if x)}")

        killed_at = time.monotonic()
        kill()
        progress(f"  killed {victim}; waiting until no request fails for {quiet_s:.0f}s")

        def quiet() -> bool:
            now = time.monotonic()
            recent = load.since(now - quiet_s)
            return now - killed_at >= quiet_s and bool(recent) and all(s.ok for s in recent)

        if not wait_until(quiet, max_wait_s):
            progress(f"  requests still fail {max_wait_s:.0f}s after the kill")
        result.failed_after_kill, result.failing_for_s = summarize_recovery(
            load.since(killed_at), killed_at)
        result.failures_by_kind = failures_by_kind(load.since(killed_at), killed_at)
        progress(f"  {result.failed_after_kill} failed requests, the last "
                 f"{result.failing_for_s:.2f}s after the kill")

        restarted_at = time.monotonic()
        restart()
        progress(f"  restarted {victim}; waiting until it serves through the load balancer")

        def back() -> bool:
            return any(s.ok and s.served_by == victim for s in load.since(restarted_at))

        if wait_until(back, max_wait_s):
            first = min(s.at for s in load.since(restarted_at) if s.ok and s.served_by == victim)
            result.rejoin_s = first - restarted_at
            progress(f"  {victim} rejoined after {result.rejoin_s:.2f}s")
        else:
            progress(f"  {victim} did not rejoin within {max_wait_s:.0f}s")
        result.failed_after_restart = sum(not s.ok for s in load.since(restarted_at))
    everything = load.since(started)
    result.requests = len(everything)
    elapsed = (everything[-1].at - everything[0].at) if everything else 0.0
    result.request_rate = result.requests / elapsed if elapsed else 0.0
    statuses: dict = {}
    for s in everything:
        key = str(s.status) if s.status is not None else "no answer"
        statuses[key] = statuses.get(key, 0) + 1
    result.statuses = statuses
    return result
