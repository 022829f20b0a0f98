"""The failover drill: crash one instance under a steady stream of requests through the local
load balancer, check that the proxy marks it down within the target group's health check
window and that the other instance keeps answering, then start it again and check that it
rejoins the rotation with its seed (SEED_FILE) intact.

The health check keeps the target group's timing (AWS's: every 5 s, 2 to fail, 2 to pass),
but the drill chooses when to act. It follows the checks' phase (HealthCheckClock), crashes
the instance just before a check is due and starts it again just before another, so that
detection and rejoin each take about one interval rather than anything up to two. It also
counts the checks: an ALB marks a target down after `unhealthy` failed checks in a row and
back after `healthy` passing ones; fewer is a load balancer more forgiving than AWS.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from infra.local.health import USER_AGENT
from infra.local.processes import wait_until
from infra.local.proxy import read_events, server_log
from infra.local.testbed import app_process_name

STREAM_PERIOD = 0.02  # one GET every ~20 ms
REQUEST_TIMEOUT = 2.0
WARMUP = 0.5  # seconds of stream before the crash: both instances must answer
SLACK = 3.0  # seconds on top of the health check windows: process start, scheduling, polling
KILL_LEAD = 0.3  # the crash lands this long before a health check is due
RESTART_LEAD = 0.5  # the restarted app answers at least this long before a check is due
CHECKER_LOGGER = "health_checker.active"  # Caddy's logger for its active health checks
TICK = 1.5  # seconds between progress lines while the drill waits


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


class Ticker(threading.Thread):
    """While the drill waits, one line every TICK seconds: what for, since when, and the
    requests so far."""

    def __init__(self, say, stream: RequestStream, period: float = TICK):
        super().__init__(daemon=True, name="drill-ticker")
        self.say, self.stream, self.period = say, stream, period
        self._what: tuple[str, float] | None = None
        self._halt = threading.Event()

    def waiting(self, what: str, since: float | None = None) -> None:
        """From now on the drill waits for `what`; the time shown counts from `since`."""
        self._what = (what, since or time.time())

    def run(self) -> None:
        while not self._halt.wait(self.period):
            if self._what is not None:
                what, since = self._what
                samples = list(self.stream.samples)
                failed = sum(1 for s in samples if not s.ok)
                self.say(f"drill: {what} ({time.time() - since:.1f}s; {len(samples)} "
                         f"requests so far, {failed} failed)")

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.period + 1)


class HealthCheckClock:
    """When the load balancer's next health check is due, from what the checks leave behind.

    Caddy's checker starts with each config it loads (its "started" event, then one check of
    every upstream at once) and checks again every interval. Each check is one `GET <path>`
    line in each app's access log, whose arrival this clock notes as it polls that log; each
    failed one is a line in Caddy's log with its time. The latest of these is the anchor.
    """

    def __init__(self, runtime_dir, interval: float, path: str, app_log: str | Path | None):
        self.runtime_dir = runtime_dir
        self.interval = float(interval)
        # `GET /health HTTP/1.1"` or `GET /health?x`: the request line of any access log;
        # only Caddy's checks count: not our probes, nor the supervisor's ALB-style checks.
        self._check_line = re.compile(rf"GET {re.escape(path)}[ ?]")
        self._app_log = Path(app_log) if app_log else None
        self._offset = self._size()
        self.anchor: float | None = None
        self.source = "none"
        self._anchor_from_caddy()

    def _size(self) -> int:
        try:
            return self._app_log.stat().st_size if self._app_log else 0
        except OSError:
            return 0

    def _anchor_from_caddy(self) -> None:
        for event in read_events(self.runtime_dir):
            if event.get("name") == "started":
                self._note(float(event["ts"]), "Caddy's config load")
        for entry in failed_checks(self.runtime_dir, host=None, since=0.0):
            self._note(float(entry["ts"]), "a failed check in Caddy's log")

    def _note(self, ts: float, source: str) -> None:
        if self.anchor is None or ts > self.anchor:
            self.anchor, self.source = ts, source

    def observe(self) -> None:
        """New check lines in the app's log since the last call: a check happened about now."""
        size = self._size()
        if size <= self._offset or self._app_log is None:
            self._offset = min(self._offset, size)
            return
        now = time.time()
        with open(self._app_log, "rb") as log:
            log.seek(self._offset)
            chunk = log.read(size - self._offset).decode(errors="replace")
        self._offset = size
        if any(self._check_line.search(line) and not _ours(line)
               for line in chunk.splitlines()):
            self._note(now, "the app's access log")

    def due_after(self, t: float) -> float | None:
        """The first check due at or after `t` (None if no check was ever seen)."""
        self._anchor_from_caddy()
        if self.anchor is None:
            return None
        periods = max(0, -int(-(t - self.anchor) // self.interval))  # ceil
        return self.anchor + periods * self.interval

    def wait_before_next(self, lead: float) -> float | None:
        """Sleep until `lead` seconds before the next check that is at least that far off;
        return when that check is due (at once, None, if no check was ever seen)."""
        due = self.due_after(time.time() + lead)
        while due is not None and time.time() < due - lead:
            self.sleep_until(min(due - lead, time.time() + 0.25))
            due = self.due_after(due - self.interval / 2)  # the same check, as now seen
        return due

    def sleep_until(self, t: float, step: float = 0.02) -> None:
        """Sleep until `t`, noting the checks that happen meanwhile."""
        while (left := t - time.time()) > 0:
            time.sleep(min(step, left))
            self.observe()


def failed_checks(runtime_dir, host: str | None, since: float, until: float = float("inf")):
    """Caddy's log lines for its failed active health checks (connection refused, timeout,
    wrong status), of `host` (or any) between `since` and `until`."""
    found = []
    try:
        text = server_log(runtime_dir).read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        if CHECKER_LOGGER not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (
            str(entry.get("logger", "")).endswith(CHECKER_LOGGER)
            and entry.get("msg") not in ("host is up", "host is down")
            and (host is None or entry.get("host") == host)
            and since <= float(entry.get("ts", 0)) <= until
        ):
            found.append(entry)
    return found


def count_check_lines(log: str | Path, offset: int, path: str) -> int:
    """Caddy's health check requests in an app's access log after byte `offset`."""
    pattern = re.compile(rf"GET {re.escape(path)}[ ?]")
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if pattern.search(line) and not _ours(line))


# User-Agents of the requests that are not Caddy's health checks, where the log shows them:
# our own probes (requests) and the supervisor's checks for moto's target health.
OWN_AGENTS = ("python-requests", USER_AGENT)


def _ours(line: str) -> bool:
    return any(agent in line for agent in OWN_AGENTS)


def _log_size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


@dataclass
class DrillResult:
    passed: bool = False
    victim: str = ""
    survivor: str = ""
    window: float = 0.0  # the health check window the detection must fit in
    detected_after: float | None = None  # kill -> Caddy's "unhealthy" event
    rejoin_window: float = 0.0
    rejoined_after: float | None = None  # app answering again -> Caddy's "healthy" event
    failed_checks: int | None = None  # Caddy's failed checks of the victim, crash -> down
    passing_checks: int | None = None  # checks the victim answered, restart -> back
    timed_by: str = ""  # what the drill took the health checks' phase from
    requests: int = 0
    failed: int = 0
    failed_before_detection: int = 0  # during failover: crash -> Caddy marks it down
    failed_after_detection: int = 0
    survivor_failed: int = 0
    seed_intact: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        det = f"{self.detected_after:.1f}s" if self.detected_after is not None else "never"
        rej = f"{self.rejoined_after:.1f}s" if self.rejoined_after is not None else "never"
        fails = f"{self.failed_checks} failed checks, " if self.failed_checks is not None else ""
        passes = (f"{self.passing_checks} passing checks, "
                  if self.passing_checks is not None else "")
        failover = (f"the {self.detected_after:.1f}s from the crash until Caddy marked it "
                    "down" if self.detected_after is not None else "Caddy never marked it down")
        text = (
            f"marked down after {det} ({fails}window {self.window:.0f}s), back after {rej} "
            f"({passes}window {self.rejoin_window:.0f}s); {self.requests} requests: "
            f"{self.failed_before_detection} failed during failover ({failover}), "
            f"{self.failed_after_detection} after; seed "
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


def _settled_count(count, expected: int, settle: float = 1.0) -> int:
    """A count read from logs that another process writes: give it a moment to reach
    `expected` (a line may land just after the event it goes with), then take it."""
    wait_until(lambda: count() >= expected, settle, 0.05)
    return count()


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

    records = {iid: testbed.processes.record(app_process_name(iid))
               for iid in (result.victim, result.survivor)}
    victim_log = records[result.victim].log if records[result.victim] else None
    survivor_log = records[result.survivor].log if records[result.survivor] else None
    clock = HealthCheckClock(testbed.runtime_dir, health.interval, health.path, survivor_log)
    meta = testbed.meta
    # Time the restart so that the app answers just before a check, with room for a slow start.
    start_budget = RESTART_LEAD + max(1.0, 2 * (meta.app_ready_seconds if meta else 1.0))

    stream = RequestStream(testbed.lb_address)
    stream.start()
    ticker = Ticker(say, stream)
    ticker.start()
    try:
        both = {result.victim, result.survivor}

        def served() -> set:
            return {s.served_by for s in stream.since(0) if s.ok}

        # Both must answer before the crash (a busy machine may need more than WARMUP).
        ticker.waiting("requests through the load balancer; waiting for both instances to "
                       "answer, then for a health check to time the crash")
        clock.sleep_until(time.time() + WARMUP)
        wait_until(lambda: both <= served(), 5.0, 0.05)
        if not both <= served():
            result.problems.append(f"before the crash only {sorted(served())} answered")

        # Crash just before a check is due: that check is the first to fail.
        due = clock.wait_before_next(KILL_LEAD)
        result.timed_by = clock.source
        say(f"drill: crashing {result.victim} ({victim_addr}) under "
            f"~{1 / STREAM_PERIOD:.0f} GET/s"
            + (f", {due - time.time():.1f}s before a health check is due (phase from "
               f"{clock.source})" if due else "")
            + f"; the health check must notice within {result.window:.0f}s")
        killed_at = time.time()
        testbed.kill_instance(result.victim)
        ticker.waiting(f"failover: waiting for Caddy to mark {result.victim} down", killed_at)
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
            result.failed_checks = _settled_count(
                lambda: len(failed_checks(testbed.runtime_dir, victim_addr, killed_at,
                                          detected_at + 0.05)),
                health.unhealthy,
            )
            say(f"drill: Caddy marked {result.victim} down after {result.detected_after:.1f}s "
                f"({result.failed_checks} failed checks)")
            if result.failed_checks != health.unhealthy:
                result.problems.append(
                    f"Caddy marked {result.victim} down after {result.failed_checks} failed "
                    f"health checks; the target group needs {health.unhealthy} in a row, as an "
                    "ALB counts them"
                )
        # From here on every request must succeed, on the survivor until the victim is back.
        ticker.waiting(f"the survivor serves alone; waiting for the moment to start "
                       f"{result.victim} again", detected_at)
        clock.wait_before_next(start_budget)
        say(f"drill: starting {result.victim} again (same seed file)")
        # Every check the new process answers counts, also one before our own probe returns.
        restarted_from = _log_size(victim_log) if victim_log else 0
        testbed.start_instance(result.victim)
        answering_at = time.time()
        ticker.waiting(f"waiting for Caddy to put {result.victim} back", answering_at)
        up = _wait_health_event(
            testbed.runtime_dir, "healthy", victim_addr, killed_at, result.rejoin_window
        )
        if up is None:
            result.problems.append(f"Caddy did not put {result.victim} back within "
                                   f"{result.rejoin_window:.0f}s")
        else:
            result.rejoined_after = max(0.0, float(up["ts"]) - answering_at)
            if victim_log:
                result.passing_checks = _settled_count(
                    lambda: count_check_lines(victim_log, restarted_from, health.path),
                    health.healthy,
                )
            say(f"drill: Caddy put {result.victim} back after {result.rejoined_after:.1f}s"
                + (f" ({result.passing_checks} passing checks)"
                   if result.passing_checks is not None else ""))
            if result.passing_checks is not None and result.passing_checks < health.healthy:
                result.problems.append(
                    f"Caddy put {result.victim} back after {result.passing_checks} health "
                    f"checks that its app's access log shows; the target group needs "
                    f"{health.healthy}"
                )
        # It must then actually serve through the load balancer, with its seed.
        rejoined = lambda: any(s.served_by == result.victim for s in stream.since(answering_at))  # noqa: E731
        wait_until(rejoined, 3.0, 0.05)
    finally:
        ticker.stop()
        stream.stop()

    samples = stream.samples
    result.requests = len(samples)
    failed = [s for s in samples if not s.ok]
    result.failed = len(failed)
    # During failover: until Caddy marked it down, and what was then in flight to it.
    result.failed_before_detection = len([s for s in failed if s.sent < detected_at + 0.05])
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
