"""Waiting for AWS: boto3 waiters with progress lines, the two bounded retries no waiter covers,
and deletes that find the resource already gone.

Waiters run in short rounds so a long wait (minutes on real AWS) prints a progress line with
the elapsed time after each round instead of going silent; the polling itself is the waiter's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from botocore.exceptions import ClientError, WaiterError

from infra.errors import UserError

# Progress is printed at least this often while a waiter polls.
ROUND_SECONDS = 30.0


class WaitTimeout(UserError):
    """A wait ran out of time; the message says what was awaited and what to do."""

    exit_code = 1


def wait(
    client,
    waiter_name: str,
    what: str,
    progress: Callable[[str], None],
    *,
    delay: float,
    timeout: float,
    **params,
) -> None:
    """Run boto3's waiter `waiter_name` until it succeeds, fails, or `timeout` passes."""
    waiter = client.get_waiter(waiter_name)
    delay = max(delay, 0.001)
    attempts = max(1, math.ceil(timeout / delay))  # the whole wait, in polls
    per_round = min(attempts, max(1, int(ROUND_SECONDS // delay)))
    rounds = math.ceil(attempts / per_round)
    progress(f"waiting for {what}")
    started = time.monotonic()
    for attempt in range(rounds):
        try:
            # botocore sleeps `delay` between polls; a float is fine for it.
            waiter.wait(WaiterConfig={"Delay": delay, "MaxAttempts": per_round}, **params)
            progress(f"{what}: done after {time.monotonic() - started:.1f}s")
            return
        except WaiterError as exc:
            if "Max attempts exceeded" not in str(exc) or attempt == rounds - 1:
                raise WaitTimeout(f"gave up waiting for {what}: {_reason(exc)}") from None
            now = _states(exc.last_response)
            progress(f"still waiting for {what} ({time.monotonic() - started:.0f}s)"
                     + (f": {now}" if now else ""))


def _states(last) -> str:
    """What the waiter saw last, in a few words: instance, load balancer or target states."""
    if not isinstance(last, dict):
        return ""
    parts = []
    for reservation in last.get("Reservations") or []:
        parts += [f"{i['InstanceId']} {i['State']['Name']}" for i in reservation["Instances"]]
    for lb in last.get("LoadBalancers") or []:
        parts.append(f"{lb['LoadBalancerName']} {lb.get('State', {}).get('Code')}")
    for d in last.get("TargetHealthDescriptions") or []:
        health = d["TargetHealth"]
        parts.append(f"{d['Target']['Id']} {health.get('State')}"
                     + (f" ({health['Reason']})" if health.get("Reason") else ""))
    return ", ".join(parts)


def _reason(exc: WaiterError) -> str:
    last = exc.last_response or {}
    error = last.get("Error") if isinstance(last, dict) else None
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    now = _states(last)
    return str(exc.kwargs.get("reason") or exc) + (f" (last seen: {now})" if now else "")


def ignore_missing(missing_code: str, call: Callable[..., object], **params) -> None:
    """`call(**params)`, a delete; AWS's `missing_code` (already gone) counts as done, so a
    destroy can run twice."""
    try:
        call(**params)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != missing_code:
            raise


def retry_while(
    action: Callable[[], object],
    codes: tuple[str, ...],
    what: str,
    progress: Callable[[str], None],
    *,
    delay: float,
    budget: float,
    explain: str,
):
    """Call `action` again, with exponential backoff, while AWS answers with one of `codes`.

    Only for the two cases no waiter covers: a security group that a deleted load balancer's
    network interfaces still hold (DependencyViolation), and a target group still in use
    (ResourceInUse). The total wait is bounded by `budget` seconds.
    """
    started = time.monotonic()
    pause = delay
    announced = False
    while True:
        try:
            return action()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in codes:
                raise
            spent = time.monotonic() - started
            if spent + pause > budget:
                raise UserError(
                    f"{what} still fails with {code} after {spent:.0f}s: {explain}",
                    exit_code=1,
                ) from None
            if not announced:
                progress(f"{what}: {code}, retrying for up to {budget:.0f}s ({explain})")
                announced = True
            time.sleep(pause)
            pause = min(pause * 2, 30.0)
