"""The failover drill: crash one instance under a steady stream of requests through the local
load balancer, check that the proxy marks it down within the target group's health check
window and that the other instance keeps answering, then start it again and check that it
rejoins the rotation with its seed (SEED_FILE) intact.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import requests

from infra.local.processes import wait_until
from infra.local.proxy import read_events

STREAM_PERIOD = 0.02  # one GET every ~20 ms
REQUEST_TIMEOUT = 2.0
WARMUP = 0.5  # seconds of stream before the crash: both instances must answer
SLACK = 3.0  # seconds on top of the health check windows: process start, scheduling, polling


@dataclass
class Sample:
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
        self.samples: list[Sample] = []
        self.max_seconds = max_seconds
        self._halt = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < deadline:
            sent = time.time()
            try:
                resp = session.get(self.url, timeout=REQUEST_TIMEOUT)
                sample = Sample(sent, resp.status_code, resp.headers.get("X-Served-By"),
                                resp.text.strip())
            except requests.RequestException as exc:
                sample = Sample(sent, None, None, "", type(exc).__name__)
            self.samples.append(sample)
            self._halt.wait(STREAM_PERIOD)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=REQUEST_TIMEOUT + 1)

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.sent >= t]


@dataclass
class DrillResult:
    passed: bool = False
    victim: str = ""
    survivor: str = ""
    window: float = 0.0  # the health check window the detection must fit in
    detected_after: float | None = None  # kill -> Caddy's "unhealthy" event
    rejoin_window: float = 0.0
    rejoined_after: float | None = None  # app answering again -> Caddy's "healthy" event
    requests: int = 0
    failed: int = 0
    failed_before_detection: int = 0
    failed_after_detection: int = 0
    survivor_failed: int = 0
    seed_intact: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        det = f"{self.detected_after:.1f}s" if self.detected_after is not None else "never"
        rej = f"{self.rejoined_after:.1f}s" if self.rejoined_after is not None else "never"
        text = (
            f"marked down after {det} (window {self.window:.0f}s), back after {rej} "
            f"(window {self.rejoin_window:.0f}s); {self.requests} requests, {self.failed} failed "
            f"({self.failed_before_detection} before the proxy noticed, "
            f"{self.failed_after_detection} after); seed "
            f"{'intact' if self.seed_intact else 'LOST'}"
        )
        return text + "".join(f"\n  - {p}" for p in self.problems)


def _health_event(runtime_dir, name: str, host: str, after: float) -> dict | None:
    for event in read_events(runtime_dir):
        if (
            event.get("name") == name
            and (event.get("data") or {}).get("host") == host
            and float(event.get("ts", 0)) >= after
        ):
            return event
    return None


def _wait_health_event(
    runtime_dir, name: str, host: str, after: float, timeout: float
) -> dict | None:
    """The first such event from Caddy, waited for up to `timeout` seconds (None if none)."""
    event = None

    def seen() -> bool:
        nonlocal event
        event = _health_event(runtime_dir, name, host, after)
        return event is not None

    wait_until(seen, timeout, 0.1)
    return event


def _post_seed(address: str, value: int) -> bool:
    try:
        resp = requests.post(f"http://{address}/", json={"num": value}, timeout=REQUEST_TIMEOUT)
        return resp.status_code == 200
    except requests.RequestException:
        return False


def _get_seed(address: str) -> str | None:
    try:
        resp = requests.get(f"http://{address}/", timeout=REQUEST_TIMEOUT)
    except requests.RequestException:
        return None
    return resp.text.strip() if resp.status_code == 200 else None


def run_drill(testbed, progress=None, rng: random.Random | None = None) -> DrillResult:
    say = progress or (lambda _m: None)
    result = DrillResult()
    view = testbed.read_stack()
    instances = testbed.instances
    in_rotation = [t.id for t in view.in_service if t.id in instances]
    if len(in_rotation) < 2:
        result.problems.append(f"needs two registered instances, found {len(in_rotation)}")
        return result
    health = view.health
    result.victim, result.survivor = in_rotation[0], in_rotation[1]
    victim_addr = instances[result.victim]
    # Caddy checks every interval; the Nth failed check marks the target down, and the last
    # check may take up to the timeout. The same holds for passes on the way back.
    result.window = health.interval * health.unhealthy + health.timeout + SLACK
    result.rejoin_window = health.interval * health.healthy + health.timeout + SLACK

    rng = rng or random.Random()  # noqa: S311 - a test value, not a secret
    seed = rng.randint(10_000, 99_999)
    if not _post_seed(victim_addr, seed) or _get_seed(victim_addr) != str(seed):
        result.problems.append(f"could not set the seed {seed} on {result.victim} directly")
        return result

    stream = RequestStream(testbed.lb_address)
    stream.start()
    try:
        both = {result.victim, result.survivor}

        def served() -> set:
            return {s.served_by for s in stream.since(0) if s.ok}

        # Both must answer before the crash (a busy machine may need more than WARMUP).
        time.sleep(WARMUP)
        wait_until(lambda: both <= served(), 5.0, 0.05)
        if not both <= served():
            result.problems.append(f"before the crash only {sorted(served())} answered")

        say(f"drill: crashing {result.victim} ({victim_addr}) under "
            f"~{1 / STREAM_PERIOD:.0f} GET/s; the health check must notice within "
            f"{result.window:.0f}s")
        killed_at = time.time()
        testbed.kill_instance(result.victim)
        down = _wait_health_event(
            testbed.runtime_dir, "unhealthy", victim_addr, killed_at, result.window
        )
        if down is None:
            result.problems.append(f"Caddy did not mark {result.victim} down within "
                                   f"{result.window:.0f}s")
            detected_at = time.time()
        else:
            detected_at = float(down["ts"])
            result.detected_after = detected_at - killed_at
            say(f"drill: Caddy marked {result.victim} down after {result.detected_after:.1f}s")
        # From here on every request must succeed, on the survivor until the victim is back.
        say(f"drill: starting {result.victim} again (same seed file)")
        testbed.start_instance(result.victim)
        answering_at = time.time()
        up = _wait_health_event(
            testbed.runtime_dir, "healthy", victim_addr, killed_at, result.rejoin_window
        )
        if up is None:
            result.problems.append(f"Caddy did not put {result.victim} back within "
                                   f"{result.rejoin_window:.0f}s")
        else:
            result.rejoined_after = max(0.0, float(up["ts"]) - answering_at)
            say(f"drill: Caddy put {result.victim} back after {result.rejoined_after:.1f}s")
        # It must then actually serve through the load balancer, with its seed.
        rejoined = lambda: any(s.served_by == result.victim for s in stream.since(answering_at))  # noqa: E731
        wait_until(rejoined, 3.0, 0.05)
    finally:
        stream.stop()

    samples = stream.samples
    result.requests = len(samples)
    failed = [s for s in samples if not s.ok]
    result.failed = len(failed)
    result.failed_before_detection = len([s for s in failed if s.sent < detected_at])
    # A request sent just before the event may still be in flight to the dead target.
    result.failed_after_detection = len([s for s in failed if s.sent >= detected_at + 0.05])
    result.survivor_failed = len(
        [s for s in samples if s.served_by == result.survivor and not s.ok]
    )
    from_victim = [s for s in samples if s.sent >= answering_at and s.served_by == result.victim]
    result.seed_intact = bool(from_victim) and all(s.body == str(seed) for s in from_victim)
    if not from_victim:
        result.problems.append(f"{result.victim} served nothing through the load balancer after "
                               "it came back")
    elif not result.seed_intact:
        bodies = sorted({s.body for s in from_victim})
        result.problems.append(f"{result.victim} came back with seed {bodies}, not {seed}")
    if result.failed_after_detection:
        result.problems.append(f"{result.failed_after_detection} requests failed after Caddy "
                               "had marked the instance down")
    if result.survivor_failed:
        result.problems.append(f"{result.survivor_failed} requests to the survivor failed")
    result.passed = not result.problems
    return result
