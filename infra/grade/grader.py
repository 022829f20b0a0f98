"""The grader: checks a load balancer over plain HTTP, the way the autograder will.

`grade(address, instances)` runs six checks and returns a Report. It is an HTTP client and
nothing else (AWS is only touched by the CLI's `--aws`, in infra/grade/target_health.py).
Three parts, one job each:

    plan.py     which requests, in which order, so that the checks do not corrupt each
                other; it ends the way the real grader does: every instance holding the
                last number it POSTed. Its transcript is what came back.
    checks.py   the six named checks, each judging its own part of the transcript
    report.py   the report: one line per check, a verdict, a dict for --json

Every phase is bounded, and so is the whole run: at most MAX_REQUESTS requests, each within
`timeout` seconds (connect, status, headers and body), all within `deadline` seconds (see
http_answer.py for the size limits).
"""

from __future__ import annotations

import random
import threading
import time

from infra.grade.address import Address, Endpoint, parse_address, parse_instances
from infra.grade.checks import judge
from infra.grade.http_answer import LIMITS, Limits
from infra.grade.plan import RequestPlan
from infra.grade.report import Check, Report

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_TIMEOUT", "MAX_REQUESTS", "Check", "Report", "grade"]

MAX_REQUESTS = 60  # the grader is a client of somebody's server: never more than this
DEFAULT_TIMEOUT = 3.0  # one request: connect, status line, headers and body
DEFAULT_DEADLINE = 30.0  # the whole run; a dead target costs one timeout, not this


def grade(address: str | Address, instances: list[str | Endpoint] | None = None, *,
          timeout: float = DEFAULT_TIMEOUT, deadline: float = DEFAULT_DEADLINE,
          max_requests: int = MAX_REQUESTS, rng: random.Random | None = None,
          cancel: threading.Event | None = None, limits: Limits = LIMITS,
          public_only: bool = False) -> Report:
    """Grade the load balancer at `address` (and each instance, when given) over HTTP.

    Ends within `deadline` seconds (plus one `timeout` at most for a name lookup that hangs)
    after at most `max_requests` requests. `cancel`, when set, stops it with Cancelled.
    `public_only`: an address that is not public (public.py) gets no byte (a class, Gradescope).
    """
    addr = address if isinstance(address, Address) else parse_address(address)
    endpoints: list[Endpoint] = []
    for item in instances or []:
        for e in ([item] if isinstance(item, Endpoint) else parse_instances(item)):
            if e not in endpoints:
                endpoints.append(e)
    started = time.monotonic()
    plan = RequestPlan(addr, endpoints, timeout=timeout, budget=max_requests,
                       deadline=deadline, rng=rng or random.Random(),  # noqa: S311 - test values
                       cancel=cancel, limits=limits, public_only=public_only)
    transcript = plan.run()
    statuses = [e.status for e in transcript.gets() if e.status and e.status != 200]
    return Report(addr, endpoints, judge(transcript), plan.client.count,
                  time.monotonic() - started, lb_statuses=statuses,
                  cut_short=transcript.cut_short, timeout=timeout, deadline=deadline)
