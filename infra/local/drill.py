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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.console import quiet
from infra.local.health import USER_AGENT
from infra.local.processes import wait_until
from infra.local.proxy import read_events, server_log
from infra.local.runtime import app_process_name
from infra.local.stream import STREAM_PERIOD, CrashOutcome, RequestStream

WARMUP = 0.5  # seconds of stream before the crash: both instances must answer
SLACK = 3.0  # seconds on top of the health check windows: process start, scheduling, polling
KILL_LEAD = 0.3  # the crash lands this long before a health check is due
RESTART_LEAD = 0.5  # the restarted app answers at least this long before a check is due
CHECKER_LOGGER = "health_checker.active"  # Caddy's logger for its active health checks
TICK = 1.5  # seconds between progress lines while the drill waits


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
class DrillResult(CrashOutcome):
    window: float = 0.0  # the health check window the detection must fit in
    detected_after: float | None = None  # kill -> Caddy's "unhealthy" event
    rejoin_window: float = 0.0
    rejoined_after: float | None = None  # app answering again -> Caddy's "healthy" event
    failed_checks: int | None = None  # Caddy's failed checks of the victim, crash -> down
    passing_checks: int | None = None  # checks the victim answered, restart -> back
    timed_by: str = ""  # what the drill took the health checks' phase from
    failed_before_detection: int = 0  # during failover: crash -> Caddy marks it down
    failed_after_detection: int = 0

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


def _settled_count(count, expected: int, settle: float = 1.0) -> int:
    """A count read from logs that another process writes: give it a moment to reach
    `expected` (a line may land just after the event it goes with), then take it."""
    wait_until(lambda: count() >= expected, settle, 0.05)
    return count()




def run_drill(testbed, progress: Callable[[str], None] | None = None,
              rng: random.Random | None = None) -> DrillResult:
    result = DrillResult()
    prepared = result.prepare(testbed, rng)
    if prepared is not None:
        address, seed = prepared
        FailoverDrill(testbed, result, address, seed, progress or quiet).run()
    return result


class FailoverDrill:
    """One run of the drill, step by step, under the stream of requests: warm up, crash the
    victim just before a check, wait for Caddy to mark it down, start it again just before
    a check, wait for Caddy to put it back, then count."""

    def __init__(self, testbed, result: DrillResult, address: str, seed: int,
                 say: Callable[[str], None]):
        self.testbed, self.result, self.address, self.seed, self.say = \
            testbed, result, address, seed, say
        self.health = health = testbed.read_stack().health
        # Caddy checks every interval; the Nth failed check marks the target down, and the
        # last check may take up to the timeout. The same holds for passes on the way back.
        result.window = health.interval * health.unhealthy + health.timeout + SLACK
        result.rejoin_window = health.interval * health.healthy + health.timeout + SLACK
        logs = {}
        for iid in (result.victim, result.survivor):
            record = testbed.processes.record(app_process_name(iid))
            logs[iid] = record.log if record else None
        self.victim_log = logs[result.victim]
        self.clock = HealthCheckClock(testbed.runtime_dir, health.interval, health.path,
                                      logs[result.survivor])
        # Time the restart so that the app answers just before a check, with room for a
        # slow start.
        meta = testbed.meta
        self.start_budget = RESTART_LEAD + max(1.0, 2 * (meta.app_ready_seconds if meta else 1.0))
        self.stream = RequestStream(testbed.lb_address)
        self.ticker = Ticker(say, self.stream)
        self.killed_at = self.detected_at = self.answering_at = 0.0
        self.restarted_from = 0  # the victim's log size when it started again

    def run(self) -> None:
        self.stream.start()
        self.ticker.start()
        try:
            self._warm_up()
            self._crash()
            self._await_down()
            self._restart()
            self._await_back()
        finally:
            self.ticker.stop()
            self.stream.stop()
        self._count()

    def _warm_up(self) -> None:
        """Both must answer before the crash (a busy machine may need more than WARMUP)."""
        both = {self.result.victim, self.result.survivor}
        self.ticker.waiting("requests through the load balancer; waiting for both instances "
                            "to answer, then for a health check to time the crash")
        self.clock.sleep_until(time.time() + WARMUP)
        wait_until(lambda: both <= self.stream.served(), 5.0, 0.05)
        if not both <= self.stream.served():
            self.result.problems.append(
                f"before the crash only {sorted(self.stream.served())} answered")

    def _crash(self) -> None:
        """Crash just before a check is due: that check is the first to fail."""
        r, clock = self.result, self.clock
        due = clock.wait_before_next(KILL_LEAD)
        r.timed_by = clock.source
        self.say(f"drill: crashing {r.victim} ({self.address}) under "
                 f"~{1 / STREAM_PERIOD:.0f} GET/s"
                 + (f", {due - time.time():.1f}s before a health check is due (phase from "
                    f"{clock.source})" if due else "")
                 + f"; the health check must notice within {r.window:.0f}s")
        self.killed_at = time.time()
        self.testbed.kill_instance(r.victim)
        self.ticker.waiting(f"failover: waiting for Caddy to mark {r.victim} down",
                            self.killed_at)

    def _caddy_event(self, name: str, window: float, what: str) -> dict | None:
        """Caddy's `name` event for the victim since the crash; a problem if none in time."""
        event = _wait_health_event(self.testbed.runtime_dir, name, self.address,
                                   self.killed_at, window)
        if event is None:
            self.result.problems.append(f"Caddy did not {what} within {window:.0f}s")
        return event

    def _await_down(self) -> None:
        r, unhealthy = self.result, self.health.unhealthy
        down = self._caddy_event("unhealthy", r.window, f"mark {r.victim} down")
        if down is None:
            self.detected_at = time.time()
            return
        self.detected_at = float(down["ts"])
        r.detected_after = self.detected_at - self.killed_at
        r.failed_checks = _settled_count(
            lambda: len(failed_checks(self.testbed.runtime_dir, self.address, self.killed_at,
                                      self.detected_at + 0.05)), unhealthy)
        self.say(f"drill: Caddy marked {r.victim} down after {r.detected_after:.1f}s "
                 f"({r.failed_checks} failed checks)")
        if r.failed_checks != unhealthy:
            r.problems.append(
                f"Caddy marked {r.victim} down after {r.failed_checks} failed health checks; "
                f"the target group needs {unhealthy} in a row, as an ALB counts them")

    def _restart(self) -> None:
        """From here on every request must succeed, on the survivor until the victim is back."""
        victim = self.result.victim
        self.ticker.waiting(f"the survivor serves alone; waiting for the moment to start "
                            f"{victim} again", self.detected_at)
        self.clock.wait_before_next(self.start_budget)
        self.say(f"drill: starting {victim} again (same seed file)")
        # Every check the new process answers counts, also one before our own probe returns.
        self.restarted_from = _log_size(self.victim_log) if self.victim_log else 0
        self.testbed.start_instance(victim)
        self.answering_at = time.time()
        self.ticker.waiting(f"waiting for Caddy to put {victim} back", self.answering_at)

    def _await_back(self) -> None:
        r, healthy = self.result, self.health.healthy
        up = self._caddy_event("healthy", r.rejoin_window, f"put {r.victim} back")
        if up is not None:
            r.rejoined_after = max(0.0, float(up["ts"]) - self.answering_at)
            if self.victim_log:
                r.passing_checks = _settled_count(
                    lambda: count_check_lines(self.victim_log, self.restarted_from,
                                              self.health.path), healthy)
            self.say(f"drill: Caddy put {r.victim} back after {r.rejoined_after:.1f}s"
                     + (f" ({r.passing_checks} passing checks)"
                        if r.passing_checks is not None else ""))
            if r.passing_checks is not None and r.passing_checks < healthy:
                r.problems.append(
                    f"Caddy put {r.victim} back after {r.passing_checks} health checks that "
                    f"its app's access log shows; the target group needs {healthy}")
        # It must then actually serve through the load balancer, with its seed.
        wait_until(lambda: any(s.served_by == r.victim
                               for s in self.stream.since(self.answering_at)), 3.0, 0.05)

    def _count(self) -> None:
        r, samples = self.result, self.stream.samples
        from_victim = r.count(samples, self.answering_at, self.seed)
        failed = [s for s in samples if not s.ok]
        # During failover: until Caddy marked it down, and what was then in flight to it.
        r.failed_before_detection = len([s for s in failed if s.sent < self.detected_at + 0.05])
        # A request sent just before the event may still be in flight to the dead target.
        r.failed_after_detection = len([s for s in failed
                                        if s.sent >= self.detected_at + 0.05])
        r.note_seed(from_victim, self.seed, None if from_victim else
                    f"{r.victim} served nothing through the load balancer after it came back")
        if r.failed_after_detection:
            r.problems.append(f"{r.failed_after_detection} requests failed after Caddy had "
                              "marked the instance down")
        r.note_survivor()
        r.passed = not r.problems
