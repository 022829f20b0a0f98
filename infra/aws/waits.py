"""Waiting for AWS: boto3 waiters with progress lines, the bounded retries no waiter covers,
and deletes that find the resource already gone.

Waiters run in short rounds so a long wait (minutes on real AWS) prints a progress line with
the elapsed time after each round instead of going silent; the polling itself is the waiter's.

Most waiters are botocore's own. Five of them do not know a state or an error code that AWS
reports, and run here from the stricter definitions in STRICTER_WAITERS (built with
botocore.waiter.create_waiter_with_client, the library's way to a custom waiter).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

from botocore.exceptions import ClientError, WaiterError
from botocore.waiter import WaiterModel, create_waiter_with_client

from infra.aws import failures
from infra.errors import UserError

# What EC2 answers for an id it does not know (yet): "Eventual consistency in the Amazon EC2
# API" (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html) and the
# error codes in the EC2 API reference. Only these are retried by `until_visible`.
NOT_FOUND_CODES = frozenset({
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidNetworkInterfaceID.NotFound",
})


def _instance_states(state: str, expected: str) -> dict:
    return {"matcher": "pathAny", "argument": "Reservations[].Instances[].State.Name",
            "expected": expected, "state": state}


def _missing(code: str) -> dict:
    return {"matcher": "error", "expected": code, "state": "retry"}


# botocore's definitions (botocore/data/ec2/2016-11-15/waiters-2.json and
# botocore/data/elbv2/2015-12-01/waiters-2.json), each with the change its comment names.
# tests/aws/test_waiters.py checks that nothing else differs from the installed botocore.
STRICTER_WAITERS: dict[str, dict] = {
    "ec2": {"version": 2, "waiters": {
        # + retry on InvalidVpcID.NotFound: botocore's fails on the first describe of a VPC
        # created a moment before.
        "VpcAvailable": {"delay": 15, "operation": "DescribeVpcs", "maxAttempts": 40,
                         "acceptors": [{"expected": "available", "matcher": "pathAll",
                                        "state": "success", "argument": "Vpcs[].State"},
                                       _missing("InvalidVpcID.NotFound")]},
        # + retry on InvalidSubnetID.NotFound, for the same reason.
        "SubnetAvailable": {"delay": 15, "operation": "DescribeSubnets", "maxAttempts": 40,
                            "acceptors": [{"expected": "available", "matcher": "pathAll",
                                           "state": "success", "argument": "Subnets[].State"},
                                          _missing("InvalidSubnetID.NotFound")]},
        # botocore retries on "InvalidInternetGateway.NotFound", a code EC2 never sends: EC2
        # says InvalidInternetGatewayID.NotFound.
        "InternetGatewayExists": {
            "operation": "DescribeInternetGateways", "delay": 5, "maxAttempts": 6,
            "acceptors": [{"expected": True, "matcher": "path", "state": "success",
                           "argument": "length(InternetGateways[].InternetGatewayId) > `0`"},
                          _missing("InvalidInternetGatewayID.NotFound")]},
        # botocore fails at once on pending and stopping; a describe just after
        # TerminateInstances can still show either, and shutting-down is on the way: all
        # three are "not yet".
        "InstanceTerminated": {
            "delay": 15, "operation": "DescribeInstances", "maxAttempts": 40,
            "acceptors": [{"expected": "terminated", "matcher": "pathAll", "state": "success",
                           "argument": "Reservations[].Instances[].State.Name"},
                          _instance_states("retry", "pending"),
                          _instance_states("retry", "stopping"),
                          _instance_states("retry", "shutting-down"),
                          _missing("InvalidInstanceID.NotFound")]},
    }},
    "elbv2": {"version": 2, "waiters": {
        # + failure on failed and active_impaired: botocore has no acceptor for them, so a
        # failed load balancer is polled for 10 minutes.
        "LoadBalancerAvailable": {
            "delay": 15, "operation": "DescribeLoadBalancers", "maxAttempts": 40,
            "acceptors": [{"state": "success", "matcher": "pathAll",
                           "argument": "LoadBalancers[].State.Code", "expected": "active"},
                          {"state": "retry", "matcher": "pathAny",
                           "argument": "LoadBalancers[].State.Code",
                           "expected": "provisioning"},
                          {"state": "retry", "matcher": "error",
                           "expected": "LoadBalancerNotFound"},
                          {"state": "failure", "matcher": "pathAny",
                           "argument": "LoadBalancers[].State.Code", "expected": "failed"},
                          {"state": "failure", "matcher": "pathAny",
                           "argument": "LoadBalancers[].State.Code",
                           "expected": "active_impaired"}]},
    }},
}


def waiter_for(client, waiter_name: str):
    """botocore's waiter `waiter_name` (snake case), or its stricter version from above."""
    camel = "".join(part.title() for part in waiter_name.split("_"))
    stricter = STRICTER_WAITERS.get(client.meta.service_model.service_name, {})
    if camel in stricter.get("waiters", {}):
        # WaiterModel may keep and change the dict it gets: give it a copy.
        return create_waiter_with_client(camel, WaiterModel(copy.deepcopy(stricter)), client)
    return client.get_waiter(waiter_name)

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
    announce: bool = True,
    **params,
) -> None:
    """Run boto3's waiter `waiter_name` until it succeeds, fails, or `timeout` passes.

    `announce=False` is for the short waits after a create: no line unless it takes a round.
    """
    waiter = waiter_for(client, waiter_name)
    delay = max(delay, 0.001)
    attempts = max(1, math.ceil(timeout / delay))  # the whole wait, in polls
    per_round = min(attempts, max(1, int(ROUND_SECONDS // delay)))
    rounds = math.ceil(attempts / per_round)
    if announce:
        progress(f"waiting for {what}")
    started = time.monotonic()
    for attempt in range(rounds):
        try:
            # botocore sleeps `delay` between polls; a float is fine for it.
            waiter.wait(WaiterConfig={"Delay": delay, "MaxAttempts": per_round}, **params)
            if announce or attempt:
                progress(f"{what}: done after {time.monotonic() - started:.1f}s")
            return
        except WaiterError as exc:
            error = (exc.last_response or {}).get("Error")
            if error and error.get("Code") not in (None, ""):
                # An AWS error the waiter does not expect (AccessDenied, expired credentials):
                # say it by its class, like any other failed call.
                failed = ClientError(exc.last_response, waiter.config.operation)
                raise UserError(failures.explain(failed, f"waiting for {what}"),
                                exit_code=1) from None
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
        state = lb.get("State") or {}
        parts.append(f"{lb['LoadBalancerName']} {state.get('Code')}"
                     + (f" ({state['Reason']})" if state.get("Reason") else ""))
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


def until_visible(
    action: Callable[[], object],
    what: str,
    progress: Callable[[str], None],
    *,
    delay: float,
    budget: float,
):
    """`action()`, a call that names a resource created moments before, called again while
    EC2 answers that it does not know the id yet (NOT_FOUND_CODES). For the calls no waiter
    covers; the total wait is bounded by `budget` seconds."""
    return retry_while(action, tuple(sorted(NOT_FOUND_CODES)), what, progress, delay=delay,
                       budget=budget, explain="EC2 is eventually consistent: an id created "
                       "moments before can be unknown for a while; if it lasts, run the same "
                       "command again")


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

    For what no waiter covers: a security group that a deleted load balancer's network
    interfaces still hold (DependencyViolation), a target group still in use (ResourceInUse),
    and an id EC2 does not show yet (until_visible). The total wait is bounded by `budget`
    seconds.
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


# Why a delete of a security group or a subnet is refused for minutes after a destroy began.
_HELD_BY_DELETED_LB = (
    "AWS releases a deleted load balancer's network interfaces only minutes later; "
    "run the destroy again in a few minutes"
)


def delete_once_released(action: Callable[[], object], what: str,
                         progress: Callable[[str], None], *, missing_code: str,
                         delay: float, budget: float, busy: tuple[str, ...] = (
                             "DependencyViolation",), explain: str = _HELD_BY_DELETED_LB,
                         ) -> None:
    """A delete that AWS refuses with one of `busy` while something still holds the
    resource (a deleted load balancer's network interfaces, a listener): retried within
    `budget` seconds, `explain` saying why; `missing_code` (already gone) counts as done."""
    ignore_missing(missing_code, lambda: retry_while(
        action, busy, what, progress, delay=delay, budget=budget, explain=explain))


class Waits:
    """The waits of one of the stack's AWS concerns: its client, the settings' bounds, and
    its progress line. `until` is deploy's long wait (instances running, the load balancer
    active), announced; `created` the short one after a create, silent unless it takes a
    round; `visible` retries a call naming an id EC2 does not show yet."""

    def __init__(self, client, settings, progress: Callable[[str], None]):
        self.client = client
        self.settings = settings
        self.progress = progress

    def until(self, waiter_name: str, what: str, **params) -> None:
        wait(self.client, waiter_name, what, self.progress, delay=self.settings.waiter_delay,
             timeout=self.settings.waiter_timeout, **params)

    def created(self, waiter_name: str, what: str, **params) -> None:
        wait(self.client, waiter_name, what, self.progress, delay=self.settings.waiter_delay,
             timeout=self.settings.consistency_retry_budget, announce=False, **params)

    def visible(self, action: Callable[[], object], what: str):
        return until_visible(action, what, self.progress,
                             delay=self.settings.consistency_retry_delay,
                             budget=self.settings.consistency_retry_budget)
