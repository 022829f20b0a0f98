"""Fault injection: every AWS call of a deploy fails once in turn, and the system recovers;
real-AWS behaviours moto lacks (DependencyViolation, InvalidInstanceID.NotFound, ResourceInUse,
throttling) are injected, and deploy and destroy still succeed."""

from __future__ import annotations

import dataclasses
import time

import pytest
from moto import mock_aws
from provision_helpers import (
    EMPTY,
    FULL_STACK,
    Faults,
    count,
    is_dry_run,
    tagged_resources,
    throttle_response,
)

from infra.aws.clients import Clients, Target, resolve_target
from infra.aws.stack import Stack
from infra.errors import UserError

pytestmark = pytest.mark.long


def _quiet(_message: str) -> None:
    pass


# 45 deploys and recoveries: about 60 s alone on 2 cores, and it hit the suite's 300 s
# timeout once with the load average at 14. A hang still fails, just later.
@pytest.mark.timeout(600)
def test_every_step_of_deploy_can_fail_and_the_stack_recovers(settings):
    """For each k: the k-th AWS call of deploy fails. Deploy reports it in one clear line;
    deploying again converges to the full stack; and, from the same kind of partial stack,
    a destroy straight after the failure leaves nothing.

    Runs share a moto account in chunks of 8 k, each with its own stack name (stacks are
    isolated by their tags): a fresh account per run costs more, and one account for all
    runs slows down as terminated instances pile up."""
    with mock_aws():
        aws = Clients(Target("us-east-1", None))
        faults = Faults().attach(aws)
        Stack(aws, dataclasses.replace(settings, stack="t-count"), progress=_quiet).deploy()
        calls = list(faults.calls)
    assert len(calls) >= 30, calls
    for chunk in range(1, len(calls) + 1, 8):
        with mock_aws():
            aws = Clients(Target("us-east-1", None))
            faults = Faults().attach(aws)
            for k in range(chunk, min(chunk + 8, len(calls) + 1)):
                for then in ("redeploy", "destroy"):
                    _fail_at_then(aws, faults, dataclasses.replace(
                        settings, stack=f"k{k}-{then[:3]}"), k, then)


def _fail_at_then(aws, faults: Faults, s, k: int, then: str) -> None:
    stack = Stack(aws, s, progress=_quiet)
    faults.reset()
    faults.fail_at = k
    with pytest.raises(UserError) as failure:
        stack.deploy()
    where = f"fault at call {k} ({faults.failed}), then {then}"
    message = str(failure.value)
    assert "InjectedFault" in message and "\n" not in message, where
    faults.fail_at = None
    if then == "redeploy":
        state = stack.deploy()
        assert count(tagged_resources(aws, s.stack)) == FULL_STACK, where
        assert len(state["instances"]) == 2, where
        stack.destroy()  # keeps the account small, so each run stays cheap
    else:
        stack.destroy()
        assert count(tagged_resources(aws, s.stack)) == EMPTY, where


def test_destroy_interrupted_at_every_step_still_finishes(aws, settings):
    """Each destroy run fails at the first call (operation, n-th occurrence) that no earlier
    run failed at; run again, it gets further. Every call position a destroy makes fails once,
    and the final run leaves nothing. One deploy serves all the runs."""
    stack = Stack(aws, settings, progress=_quiet)
    stack.deploy()
    failed: list[tuple[str, int]] = []
    faults = Faults().attach(aws)
    for _attempt in range(200):
        seen: dict[str, int] = {}
        hit = {"now": None}

        def first_unfailed(op, params, seen=seen, hit=hit):
            seen[op] = seen.get(op, 0) + 1
            if hit["now"] is None and (op, seen[op]) not in failed:
                hit["now"] = (op, seen[op])
                failed.append(hit["now"])
                return "InjectedFault"
            return None

        faults.reset().rules.append(first_unfailed)
        try:
            stack.destroy()
        except UserError as exc:
            assert "InjectedFault" in str(exc) and "\n" not in str(exc), hit["now"]
            continue
        assert hit["now"] is None  # a run that injected a fault cannot have succeeded
        break
    faults.reset()
    ops = {op for op, _ in failed}
    assert {"elbv2.DeleteLoadBalancer", "ec2.TerminateInstances", "elbv2.DeleteTargetGroup",
            "ec2.DeleteSecurityGroup", "ec2.DeleteRouteTable", "ec2.DetachInternetGateway",
            "ec2.DeleteInternetGateway", "ec2.DeleteSubnet", "ec2.DeleteVpc"} <= ops, failed
    assert count(tagged_resources(aws)) == EMPTY


def first_n(op_name: str, n: int, code: str):
    """A rule failing the first n calls of one operation with `code`."""
    seen = {"count": 0}

    def rule(op, params):
        if op == op_name and seen["count"] < n:
            seen["count"] += 1
            return code
        return None

    rule.seen = seen
    return rule


def test_dependency_violation_on_security_group_delete_is_retried(aws, settings):
    stack = Stack(aws, settings, progress=_quiet)
    stack.deploy()
    faults = Faults().attach(aws)
    rule = first_n("ec2.DeleteSecurityGroup", 3, "DependencyViolation")
    faults.rules.append(rule)
    stack.destroy()
    assert rule.seen["count"] == 3
    assert faults.calls.count("ec2.DeleteSecurityGroup") == 3 + 2
    assert count(tagged_resources(aws)) == EMPTY


def test_dependency_violation_that_never_clears_gives_up_in_bounded_time(aws, settings):
    settings = dataclasses.replace(settings, dependency_retry_budget=0.5)
    stack = Stack(aws, settings, progress=_quiet)
    stack.deploy()
    faults = Faults().attach(aws)
    faults.rules.append(first_n("ec2.DeleteSecurityGroup", 10**6, "DependencyViolation"))
    started = time.monotonic()
    with pytest.raises(UserError) as failure:
        stack.destroy()
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert "DependencyViolation" in message and "again" in message and "\n" not in message
    faults.rules.clear()
    stack.destroy()  # later, it finishes
    assert count(tagged_resources(aws)) == EMPTY


def test_target_group_in_use_is_retried(aws, settings):
    stack = Stack(aws, settings, progress=_quiet)
    stack.deploy()
    faults = Faults().attach(aws)
    rule = first_n("elbv2.DeleteTargetGroup", 2, "ResourceInUse")
    faults.rules.append(rule)
    stack.destroy()
    assert rule.seen["count"] == 2
    assert count(tagged_resources(aws)) == EMPTY


def test_instance_not_found_right_after_run_instances(aws, settings):
    """AWS is eventually consistent: a new instance id can be unknown for a moment."""
    faults = Faults().attach(aws)
    state = {"launched": False, "injected": 0}

    def not_found_after_launch(op, params):
        if op == "ec2.RunInstances" and not is_dry_run(params):
            state["launched"] = True
        elif op == "ec2.DescribeInstances" and state["launched"] and state["injected"] < 2:
            state["injected"] += 1
            return "InvalidInstanceID.NotFound"
        return None

    faults.rules.append(not_found_after_launch)
    Stack(aws, settings, progress=_quiet).deploy()
    assert state["injected"] == 2
    assert count(tagged_resources(aws)) == FULL_STACK


def test_unhealthy_targets_fail_deploy_with_aws_reason_and_keep_state(aws, settings,
                                                                    monkeypatch):
    """When targets never turn healthy, deploy shows their states while it waits, then says
    why (AWS's reason) and still writes the state file."""
    from infra.aws import waits
    from infra.state import read_state

    monkeypatch.setattr(waits, "ROUND_SECONDS", 0.1)  # a progress line every 0.1 s
    settings = dataclasses.replace(settings, waiter_timeout=0.3)
    lines: list[str] = []
    stack = Stack(aws, settings, progress=lines.append)
    original = stack.lb.wait_in_service

    def never_healthy(tg_arn, ids):
        aws.ec2.stop_instances(InstanceIds=ids[:1])
        original(tg_arn, ids)

    stack.lb.wait_in_service = never_healthy
    with pytest.raises(UserError) as failure:
        stack.deploy()
    message = str(failure.value)
    assert "targets healthy" in message and "make status" in message
    saved = read_state(settings.state_dir, settings.stack)
    assert saved and saved["lb_dns"] and len(saved["target_health"]) == 2
    stopped = saved["instances"][0]["id"]
    waiting = [line for line in lines if line.startswith("still waiting for targets healthy")]
    assert waiting and stopped in waiting[-1], lines
    sick = next(h for h in saved["target_health"] if h["id"] == stopped)
    assert sick["state"] != "healthy" and sick["state"] in message


# --- over HTTP, against a moto server --------------------------------------------------


@pytest.mark.integration
def test_deploy_over_http_against_a_moto_server(moto_server, settings, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    target = resolve_target("aws", "us-east-1")
    assert target.endpoint_url == moto_server and target.is_emulator
    clients = Clients(target)
    # "me" against an emulator: no IP lookup, port 5000 reachable from the LB only.
    settings = dataclasses.replace(settings, public_access="me")
    state = Stack(clients, settings, progress=_quiet).deploy()
    assert state["endpoint_url"] == moto_server
    assert count(tagged_resources(clients)) == FULL_STACK
    groups = clients.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{settings.stack}-app-sg"]}]
    )["SecurityGroups"]
    sources = [r for p in groups[0]["IpPermissions"] for r in p.get("IpRanges", [])]
    assert sources == [], "no public CIDR on an emulator when access is 'me'"
    Stack(clients, settings, progress=_quiet).destroy()
    assert count(tagged_resources(clients)) == EMPTY


@pytest.mark.integration
def test_throttling_on_a_fraction_of_calls_is_retried_by_botocore(moto_server, settings,
                                                                   monkeypatch):
    """Every 12th HTTP request is answered with the service's throttling error before it
    reaches the server; botocore's retry configuration (standard mode) retries it, with
    backoff. test_strict_aws.py does the same on the wire, for a CLI subprocess."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    clients = Clients(resolve_target("aws", "us-east-1"))
    sent = {"n": 0, "throttled": 0}

    def throttle(request, event_name, **kwargs):
        sent["n"] += 1
        if sent["n"] % 12:
            return None
        sent["throttled"] += 1
        service = event_name.split(".")[1]
        protocol = {"ec2": "ec2", "elastic-load-balancing-v2": "query", "sts": "query"}.get(
            service, "json")
        return throttle_response(request, protocol)

    clients.session.events.register("before-send", throttle)
    stack = Stack(clients, settings, progress=_quiet)
    stack.deploy()
    assert count(tagged_resources(clients)) == FULL_STACK  # no duplicate from a retry
    stack.destroy()
    assert count(tagged_resources(clients)) == EMPTY
    assert sent["throttled"] >= 4
