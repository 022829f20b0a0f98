"""What both failover drills share: a steady stream of requests through the load balancer
while one instance crashes, and what they do around it.

Each drill (drill.py: Caddy's health checks take the crashed app out and put it back;
machines/failover.py: systemd restarts it) picks the victim and the survivor from the
target group's registered targets, sets a seed on the victim directly, runs the stream over
the crash, and then counts: the requests, the failed ones, the survivor's failures, and
whether the victim came back with its seed.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import requests

STREAM_PERIOD = 0.02  # one GET every ~20 ms
REQUEST_TIMEOUT = 2.0


@dataclass
class StreamSample:
    """One GET / of the stream, and its answer."""

    sent: float  # time.time() when sent
    status: int | None
    served_by: str | None
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


class RequestStream(threading.Thread):
    """GET / through the load balancer every STREAM_PERIOD until stopped (or max_seconds)."""

    def __init__(self, lb: str, max_seconds: float = 120.0):
        super().__init__(daemon=True, name="drill-stream")
        self.url = f"http://{lb}/"
        self.samples: list[StreamSample] = []
        self.max_seconds = max_seconds
        self._halt = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < deadline:
            sent = time.time()
            try:
                resp = session.get(self.url, timeout=REQUEST_TIMEOUT)
                sample = StreamSample(sent, resp.status_code, resp.headers.get("X-Served-By"),
                                      resp.text.strip())
            except requests.RequestException as exc:
                sample = StreamSample(sent, None, None, "", type(exc).__name__)
            self.samples.append(sample)
            self._halt.wait(STREAM_PERIOD)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=REQUEST_TIMEOUT + 1)

    def since(self, t: float) -> list[StreamSample]:
        return [s for s in list(self.samples) if s.sent >= t]

    def served(self) -> set[str | None]:
        """The instances that have answered so far."""
        return {s.served_by for s in list(self.samples) if s.ok}


def post_seed(address: str, value: int) -> bool:
    try:
        resp = requests.post(f"http://{address}/", json={"num": value}, timeout=REQUEST_TIMEOUT)
        return resp.status_code == 200
    except requests.RequestException:
        return False


def get_seed(address: str) -> str | None:
    try:
        resp = requests.get(f"http://{address}/", timeout=REQUEST_TIMEOUT)
    except requests.RequestException:
        return None
    return resp.text.strip() if resp.status_code == 200 else None


@dataclass
class CrashOutcome:
    """What both drills report; each drill's result adds its own timings."""

    passed: bool = False
    victim: str = ""
    survivor: str = ""
    requests: int = 0
    failed: int = 0
    survivor_failed: int = 0
    seed_intact: bool = False
    problems: list[str] = field(default_factory=list)

    def prepare(self, testbed, rng: random.Random | None) -> tuple[str, int] | None:
        """Pick the victim and the survivor from the registered targets and set a seed on the
        victim directly. Returns (the victim's address, the seed), or None (with the
        problem noted) when the drill cannot run."""
        instances = testbed.instances
        in_rotation = [t.id for t in testbed.read_stack().in_service if t.id in instances]
        if len(in_rotation) < 2:
            self.problems.append(f"needs two registered instances, found {len(in_rotation)}")
            return None
        self.victim, self.survivor = in_rotation[0], in_rotation[1]
        address = instances[self.victim]
        seed = (rng or random.Random()).randint(10_000, 99_999)  # noqa: S311 - a test value
        if not post_seed(address, seed) or get_seed(address) != str(seed):
            self.problems.append(f"could not set the seed {seed} on {self.victim} directly")
            return None
        return address, seed

    def count(self, samples: list[StreamSample], back_at: float, seed: int) -> list[StreamSample]:
        """Count the stream; returns what the victim served from `back_at` on, whose seed
        must be the one set before the crash."""
        self.requests = len(samples)
        self.failed = sum(1 for s in samples if not s.ok)
        self.survivor_failed = sum(1 for s in samples if s.served_by == self.survivor
                                   and not s.ok)
        from_victim = [s for s in samples if s.sent >= back_at and s.served_by == self.victim]
        self.seed_intact = bool(from_victim) and all(s.body == str(seed) for s in from_victim)
        return from_victim

    def note_seed(self, from_victim: list[StreamSample], seed: int, missing: str | None) -> None:
        """`missing`: the problem to note when the victim served nothing once back (None
        when it did); else whether it served the seed set before the crash."""
        if missing:
            self.problems.append(missing)
        elif not self.seed_intact:
            bodies = sorted({s.body for s in from_victim})
            self.problems.append(f"{self.victim} came back with seed {bodies}, not {seed}")

    def note_survivor(self) -> None:
        if self.survivor_failed:
            self.problems.append(f"{self.survivor_failed} requests to the survivor failed")
