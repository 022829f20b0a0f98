"""The command line against a moto server made as strict as AWS (strict_aws.StrictAWS): the
real `python -m infra` in a subprocess, as `make deploy-aws` runs it, meets eventual
consistency, pending instances, throttling, 503s, dependency violations, denied permissions
and an account's own free-tier answer, on the wire."""

from __future__ import annotations

import time

import pytest
from provision_helpers import (
    EMPTY,
    FULL_STACK,
    NOTHING,
    anything_billable_or_not,
    count,
    moto_view,
    one_error_line,
    run_cli,
    tagged_resources,
)
from strict_aws import NOT_FOUND, StrictAWS, Strictness

from infra.state import read_state

pytestmark = [pytest.mark.integration, pytest.mark.long]

CREATES = ("Create", "RunInstances", "Attach", "Associate", "Authorize", "Register", "Modify",
           "Start")



def changes(proxy: StrictAWS) -> list[str]:
    """Every request that would have changed something (a dry run changes nothing)."""
    return [r.action for r in proxy.injected.requests
            if r.action.startswith(CREATES) and not r.dry_run]


def test_deploy_twice_and_destroy_pass_the_first_time_under_every_fault(moto_process,
                                                                       tmp_path):
    moto_server = moto_process
    state_dir = str(tmp_path / "state")
    stack = ["--stack", "strict", "--state-dir", state_dir]
    with StrictAWS(moto_server, Strictness.everything()) as proxy:
        started = time.monotonic()
        first = run_cli(["deploy", *stack], endpoint=proxy.url)
        took = time.monotonic() - started
        assert first.returncode == 0, first.stderr + first.stdout[-3000:]
        assert count(tagged_resources(moto_view(moto_server), "strict")) == FULL_STACK
        faults = proxy.injected.faults
        # Every id a create returned was "not found" once, by the next EC2 call naming it.
        assert proxy.still_fresh == set(), proxy.still_fresh
        kinds = {i.split("-")[0] for i in proxy.injected.not_found_ids}
        assert kinds == set(NOT_FOUND), kinds  # VPC, subnet, gateway, table, groups, instances
        assert faults["throttled"] >= 5 and faults["unavailable"] >= 3 and faults["pending"] >= 2
        print(f"deploy under every fault: {took:.1f}s, {len(proxy.injected.requests)} "
              f"requests, faults {dict(faults)}")

        proxy.reset()
        second = run_cli(["deploy", *stack], endpoint=proxy.url)
        assert second.returncode == 0, second.stderr + second.stdout[-3000:]
        assert changes(proxy) == [], "a second deploy re-created or changed something"
        assert proxy.injected.faults["throttled"] >= 3

        proxy.reset()
        gone = run_cli(["destroy", *stack], endpoint=proxy.url)
        assert gone.returncode == 0, gone.stderr + gone.stdout[-3000:]
        faults = proxy.injected.faults
        # The stale `pending` after TerminateInstances was seen, and waited out.
        assert faults["pending"] >= 2 and faults["in_use"] >= 4, dict(faults)
    assert count(tagged_resources(moto_view(moto_server), "strict")) == EMPTY
    assert anything_billable_or_not(moto_view(moto_server)) == NOTHING


@pytest.mark.parametrize("denied, step", [
    ("ssm:GetParameter", "looking up the Amazon Linux 2023 AMI"),
    ("ec2:RunInstances", "trying RunInstances as a dry run"),
])
def test_a_denied_permission_stops_deploy_before_anything_exists(moto_process, tmp_path,
                                                                 denied, step):
    """Educational accounts deny ssm:GetParameter or RunInstances: the preflight names the
    permission, and there is no VPC, group, target group or load balancer to pay for."""
    strict = Strictness(deny=frozenset({denied}), eventual_consistency=True, throttle_every=5)
    with StrictAWS(moto_process, strict) as proxy:
        result = run_cli(["deploy", "--stack", "denied", "--state-dir", str(tmp_path)],
                         endpoint=proxy.url)
        assert result.returncode == 1
        line = one_error_line(result)
        assert f"AWS denied {denied} while {step}" in line
        assert "python -m infra policy" in line and "Nothing was created" in line
        assert changes(proxy) == []
    assert anything_billable_or_not(moto_view(moto_process)) == NOTHING
    assert read_state(tmp_path, "denied") is None


def test_the_instance_type_follows_the_accounts_free_tier_answer(moto_server, tmp_path):
    """An account under the legacy free tier, whose only eligible type is t2.micro."""
    with StrictAWS(moto_server, Strictness(free_tier_only=("t2.micro",))) as proxy:
        result = run_cli(["deploy", "--stack", "legacy", "--count", "1", "--state-dir",
                          str(tmp_path)], endpoint=proxy.url)
        assert result.returncode == 0, result.stderr
        assert proxy.injected.faults["free_tier_only"] == 1
    state = read_state(tmp_path, "legacy")
    assert state["instance_type"] == "t2.micro"
    assert "instance type t2.micro: free-tier eligible for this account" in result.stdout
    launched = moto_view(moto_server).ec2.describe_instances(
        InstanceIds=[state["instances"][0]["id"]])["Reservations"][0]["Instances"][0]
    assert launched["InstanceType"] == "t2.micro"
    assert run_cli(["destroy", "--stack", "legacy", "--state-dir", str(tmp_path)],
                   endpoint=moto_server).returncode == 0


def test_no_free_tier_type_left_says_what_it_costs(moto_server, tmp_path):
    with StrictAWS(moto_server, Strictness(free_tier_only=())) as proxy:
        result = run_cli(["plan", "--stack", "paying"], endpoint=proxy.url)
    assert result.returncode == 0, result.stderr
    assert "no free-tier-eligible type" in result.stdout
    assert "create instance paying-app-1: t3.micro" in result.stdout


def test_a_failed_load_balancer_ends_the_wait_at_once_with_aws_reason(moto_server, tmp_path):
    # moto_server's backend is shared within this test process: count this stack only
    with StrictAWS(moto_server, Strictness(load_balancer_fails=True)) as proxy:
        result = run_cli(["deploy", "--stack", "lbfail", "--state-dir", str(tmp_path)],
                         endpoint=proxy.url)
        assert result.returncode == 1
        line = one_error_line(result)
        assert "waiting for load balancer active" in line
        assert "failed" in line and "could not provision the load balancer" in line
        polls = [r for r in proxy.injected.requests if r.action == "DescribeLoadBalancers"]
        assert len(polls) <= 4, "the wait went on polling a failed load balancer"
        proxy.reset(Strictness())
        assert run_cli(["destroy", "--stack", "lbfail", "--state-dir", str(tmp_path)],
                       endpoint=proxy.url).returncode == 0
    assert count(tagged_resources(moto_view(moto_server), "lbfail")) == EMPTY


@pytest.mark.parametrize("action, code, expected", [
    ("ec2:RunInstances", "VcpuLimitExceeded", "L-1216C47A"),
    ("ec2:CreateVpc", "VpcLimitExceeded", "VPCs per Region"),
    ("ec2:RunInstances", "OptInRequired", "AWS Regions"),
])
def test_a_limit_says_which_and_where_to_ask(moto_server, tmp_path, action, code, expected):
    answers = {action: (400, code, f"injected {code}.")}
    with StrictAWS(moto_server, Strictness(answers=answers)) as proxy:
        result = run_cli(["deploy", "--stack", "limits", "--state-dir", str(tmp_path)],
                         endpoint=proxy.url)
        proxy.reset(Strictness())
        assert run_cli(["destroy", "--stack", "limits", "--state-dir", str(tmp_path)],
                       endpoint=proxy.url).returncode == 0
    assert result.returncode == 1
    line = one_error_line(result)
    assert code in line and expected in line


def test_expired_learner_lab_credentials_say_refresh_the_session_token(moto_server, tmp_path):
    answers = {"sts:GetCallerIdentity": (403, "ExpiredToken",
                                         "The security token included in the request is "
                                         "expired")}
    with StrictAWS(moto_server, Strictness(answers=answers)) as proxy:
        result = run_cli(["status", "--stack", "expired"], endpoint=proxy.url)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "AWS_SESSION_TOKEN" in line and "4 hours" in line


def test_an_emulator_still_loading_a_service_is_waited_for(moto_server):
    """moto and LocalStack load a service's code on its first call: seconds on a busy machine
    (LocalStack 4.13's first STS answer took 4.5 s here, moto's first EC2 one 5.7 s on two
    busy cores). AWS's tight first-call timeouts (2 s to read, two attempts) made that
    "cannot reach ... check the network" under load (make test once failed so); against an
    emulator the first call waits for the answer, while a stopped one is refused at once."""
    with StrictAWS(moto_server, Strictness(service_load_time=5.0)) as proxy:
        started = time.monotonic()
        result = run_cli(["status", "--stack", "slowstart"], endpoint=proxy.url)
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert "nothing deployed" in result.stdout
        assert proxy.injected.faults["loading"] >= 2  # STS and EC2 each answered late
        sts = [r for r in proxy.injected.requests if r.service == "sts"]
        assert len(sts) == 1, "the first call timed out and was sent again"
    assert took < 30, took
