"""The target group's health checks, made as an ALB makes them, for the control plane.

Each registered target is checked every HealthCheckIntervalSeconds with one
`GET <path>` (a new connection, User-Agent ELB-HealthChecker/2.0) that must answer one of the
matcher's codes within HealthCheckTimeoutSeconds. HealthyThresholdCount passes in a row
make a target healthy, UnhealthyThresholdCount failures in a row unhealthy; a new target is
`initial` until one of the two is reached. The reason codes and their meaning are those of
botocore's elbv2 model (shape TargetHealth):

- Target.Timeout: no answer in time (a security group dropping packets looks like this);
- Target.ResponseCodeMismatch: an answer with another code (a 404 for a missing path);
- Target.FailedHealthChecks: the connection failed (refused: nothing listens) or the
  answer was malformed.

The supervisor feeds the results to moto (infra/local/motohook.py), so DescribeTargetHealth,
boto3's waiters, `make status`, the doctor and `grade --aws` see them. Caddy keeps making its
own active health checks with the same settings: those decide its rotation.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from infra.config import success_codes_include
from infra.local.motohook import REGISTRATION

USER_AGENT = "ELB-HealthChecker/2.0"  # what an ALB's health checks send
INITIAL_CHECKING = ("initial", "Elb.InitialHealthChecking", "Initial health checking in progress")
DISABLED = ("unavailable", "Target.HealthCheckDisabled", "Health checks are disabled")
TIMEOUT = ("Target.Timeout", "Request timed out")
FAILED = ("Target.FailedHealthChecks", "Health checks failed")
# Checks run this long before Caddy's (see Monitor.align): when every target fails, the
# supervisor has switched Caddy to fail-open before Caddy's own checks empty its rotation.
LEAD_SECONDS = 1.0


@dataclass(frozen=True)
class HealthCheckProbe:
    """How to check one target: where to connect and the target group's settings."""

    address: str  # host:port: the app, or a sink when the network would not let it through
    path: str
    timeout: float
    interval: float
    healthy: int  # HealthyThresholdCount
    unhealthy: int  # UnhealthyThresholdCount
    matcher: str = "200"
    enabled: bool = True


@dataclass
class Health:
    state: str = REGISTRATION[0]
    reason: str | None = REGISTRATION[1]
    description: str | None = REGISTRATION[2]
    passes: int = 0  # in a row
    fails: int = 0
    checks: int = 0
    checked_at: float = 0.0  # time.time() of the last check
    last: str = ""  # the last check's result, for `local status`

    def as_entry(self) -> dict:
        """The entry the moto hook serves (DescribeTargetHealth's TargetHealth)."""
        entry: dict = {"State": self.state}
        if self.reason:
            entry["Reason"] = self.reason
        if self.description:
            entry["Description"] = self.description
        return entry

    def record(self, failure: tuple[str, str] | None, probe: HealthCheckProbe) -> None:
        """One check's result: None for a pass, else (reason, description)."""
        self.checks += 1
        self.checked_at = time.time()
        if failure is None:
            self.passes, self.fails, self.last = self.passes + 1, 0, "pass"
            if self.state != "healthy" and self.passes >= probe.healthy:
                self.state, self.reason, self.description = "healthy", None, None
            elif self.state == "initial":
                self.state, self.reason, self.description = INITIAL_CHECKING
            return
        self.passes, self.fails, self.last = 0, self.fails + 1, failure[0]
        if self.state == "unhealthy" or self.fails >= probe.unhealthy:
            self.state, (self.reason, self.description) = "unhealthy", failure
        elif self.state == "initial":
            self.state, self.reason, self.description = INITIAL_CHECKING


def check_once(probe: HealthCheckProbe) -> tuple[str, str] | None:
    """One health check: None when it passes, else (reason code, AWS's description)."""
    url = f"http://{probe.address}{probe.path if probe.path.startswith('/') else '/' + probe.path}"
    try:
        with requests.get(url, timeout=(probe.timeout, probe.timeout), stream=True,
                          allow_redirects=False, headers={"User-Agent": USER_AGENT}) as resp:
            status = resp.status_code
    except requests.Timeout:
        return TIMEOUT
    except requests.RequestException:
        return FAILED
    if success_codes_include(probe.matcher, status):
        return None
    return "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{status}]"


class Monitor:
    """The health checks of one target group's targets, one thread per target.

    `update()` is called on every supervisor sync with the targets to check now; a thread
    picks up a changed HealthCheckProbe at its next check, so a target's state carries across
    a change of route (a security group closing makes its next checks time out).
    """

    def __init__(self, on_change: Callable[[], None] | None = None):
        self.on_change = on_change or (lambda: None)
        self.group: str | None = None
        self.origin: float | None = None  # time.time() when Caddy's checks started
        self._lock = threading.Lock()
        self._probes: dict[str, HealthCheckProbe] = {}
        self._health: dict[str, Health] = {}
        self._stops: dict[str, threading.Event] = {}

    def update(self, group: str | None, probes: dict[str, HealthCheckProbe],
               adopt: dict[str, Health] | None = None) -> None:
        """Check exactly these targets (keys "id:port") of target group `group`.

        A new group starts every target afresh (`initial`); `adopt` gives the states to
        start from instead (the supervisor's first look, when deploy already waited).
        """
        changed = False
        with self._lock:
            if group != self.group:
                self._stop_all_locked()
                self.group = group
                changed = True
            for key in [k for k in self._probes if k not in probes]:
                self._stops.pop(key).set()
                del self._probes[key]
                del self._health[key]
                changed = True
            for key, probe in probes.items():
                if key not in self._probes:
                    self._health[key] = (adopt or {}).get(key) or Health()
                    self._stops[key] = threading.Event()
                    self._probes[key] = probe
                    threading.Thread(target=self._run, args=(key, self._stops[key]),
                                     daemon=True, name=f"health {key}").start()
                    changed = True
                else:
                    self._probes[key] = probe
        if changed:
            self.on_change()

    def align(self, origin: float | None) -> None:
        """Caddy checks its upstreams when a config is loaded, then every interval: check
        LEAD_SECONDS before it, so that the two agree and the supervisor acts first."""
        self.origin = origin

    def _until_next(self, interval: float, last: float) -> float:
        now = time.time()
        if self.origin is None or interval <= LEAD_SECONDS:
            return last + interval - now
        # the first slot at least half an interval after the last check
        k = math.ceil((last + interval / 2 + LEAD_SECONDS - self.origin) / interval)
        return self.origin + k * interval - LEAD_SECONDS - now

    def _run(self, key: str, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._lock:
                probe = self._probes.get(key)
            if probe is None:
                return
            started = time.time()
            result = check_once(probe) if probe.enabled else None
            with self._lock:
                if stop.is_set() or key not in self._health:
                    return
                health = self._health[key]
                before = health.as_entry()
                if probe.enabled:
                    health.record(result, probe)
                else:
                    health.state, health.reason, health.description = DISABLED
                changed = health.as_entry() != before
            if changed:
                self.on_change()
            # Short waits, so that a new origin (Caddy reloaded) moves the next check.
            while not stop.is_set():
                delay = self._until_next(probe.interval, started)
                if delay <= 0:
                    break
                stop.wait(min(delay, 0.25))

    def entries(self) -> dict[str, dict]:
        with self._lock:
            return {key: h.as_entry() for key, h in self._health.items()}

    def health(self) -> dict[str, Health]:
        with self._lock:
            return {key: Health(**vars(h)) for key, h in self._health.items()}

    def fail_open(self) -> bool:
        """No healthy target, and some unhealthy: an ALB then routes to all of them."""
        with self._lock:
            states = {h.state for h in self._health.values()}
        return "unhealthy" in states and "healthy" not in states

    def _stop_all_locked(self) -> None:
        for stop in self._stops.values():
            stop.set()
        self._stops.clear()
        self._probes.clear()
        self._health.clear()

    def stop(self) -> None:
        with self._lock:
            self._stop_all_locked()
