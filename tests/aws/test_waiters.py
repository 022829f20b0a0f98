"""The stricter waiters (waits.STRICTER_WAITERS): each is botocore's own definition with only
the acceptors its comment names changed, and each handles the AWS answer botocore's misses,
where botocore's own fails."""

from __future__ import annotations

import copy

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import WaiterError
from provision_helpers import error_result

from infra.aws import waits
from infra.errors import UserError

# The acceptors each stricter waiter adds to (+) or drops from (-) botocore's.
CHANGES = {
    ("ec2", "VpcAvailable"): {"+": [("error", "InvalidVpcID.NotFound", "retry")], "-": []},
    ("ec2", "SubnetAvailable"): {"+": [("error", "InvalidSubnetID.NotFound", "retry")],
                                 "-": []},
    ("ec2", "InternetGatewayExists"): {
        "+": [("error", "InvalidInternetGatewayID.NotFound", "retry")],
        "-": [("error", "InvalidInternetGateway.NotFound", "retry")]},
    ("ec2", "InstanceTerminated"): {
        "+": [("pathAny", "pending", "retry"), ("pathAny", "stopping", "retry"),
              ("pathAny", "shutting-down", "retry"),
              ("error", "InvalidInstanceID.NotFound", "retry")],
        "-": [("pathAny", "pending", "failure"), ("pathAny", "stopping", "failure")]},
    ("elbv2", "LoadBalancerAvailable"): {
        "+": [("pathAny", "failed", "failure"), ("pathAny", "active_impaired", "failure")],
        "-": []},
}


def _acceptors(definition: dict) -> list[tuple]:
    return [(a["matcher"], a["expected"], a["state"]) for a in definition["acceptors"]]


@pytest.mark.parametrize("service, name", sorted(CHANGES))
def test_each_stricter_waiter_is_botocores_with_only_the_named_change(service, name):
    """When botocore fixes or changes one of these, this test says so."""
    theirs = botocore.session.get_session().get_waiter_model(service)._waiter_config[name]
    ours = waits.STRICTER_WAITERS[service]["waiters"][name]
    for key in ("operation", "delay", "maxAttempts"):
        assert ours[key] == theirs[key], key
    change = CHANGES[(service, name)]
    expected = [a for a in _acceptors(theirs) if a not in change["-"]] + change["+"]
    assert sorted(_acceptors(ours), key=repr) == sorted(expected, key=repr)
    for acceptor in ours["acceptors"]:  # the arguments are botocore's too
        if "argument" in acceptor:
            assert acceptor["argument"] in {a.get("argument") for a in theirs["acceptors"]}


def test_only_the_changed_waiters_are_replaced():
    names = {(s, n) for s, model in waits.STRICTER_WAITERS.items() for n in model["waiters"]}
    assert names == set(CHANGES)


def _answers(*responses):
    """A before-call hook answering DescribeInstances with each of `responses` in turn
    (a dict: the parsed answer; a str: that error code), then letting calls through."""
    left = list(responses)

    def rule(model, params, **kwargs):
        if model.name != "DescribeInstances" or not left:
            return None
        answer = left.pop(0)
        if isinstance(answer, str):
            return error_result(answer, "injected")
        return AWSResponse("https://injected.invalid/", 200, {}, None), answer

    return rule


def _instances(state: str, instance_id: str) -> dict:
    return {"Reservations": [{"Instances": [{"InstanceId": instance_id,
                                             "State": {"Name": state}}]}]}


def test_a_stale_pending_after_terminate_is_waited_out(aws):
    """botocore's InstanceTerminated fails at once on `pending`; ours waits."""
    run = aws.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    instance_id = run["Instances"][0]["InstanceId"]
    aws.ec2.terminate_instances(InstanceIds=[instance_id])
    stale = [_instances("pending", instance_id), "InvalidInstanceID.NotFound",
             _instances("stopping", instance_id)]
    aws.ec2.meta.events.register("before-call", _answers(*stale))
    waits.wait(aws.ec2, "instance_terminated", "terminated", lambda _m: None, delay=0.01,
               timeout=5, InstanceIds=[instance_id])

    aws.ec2.meta.events.register("before-call", _answers(_instances("pending", instance_id)))
    with pytest.raises(WaiterError, match="terminal failure"):
        aws.ec2.get_waiter("instance_terminated").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": 0.01, "MaxAttempts": 5})


def test_a_new_vpc_not_found_once_is_waited_for(aws):
    vpc_id = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    once = {"left": 1}

    def not_found_once(model, params, **kwargs):
        if model.name == "DescribeVpcs" and once["left"]:
            once["left"] -= 1
            return error_result("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist")
        return None

    aws.ec2.meta.events.register("before-call", not_found_once)
    waits.wait(aws.ec2, "vpc_available", "vpc", lambda _m: None, delay=0.01, timeout=5,
               VpcIds=[vpc_id])
    assert once["left"] == 0
    once["left"] = 1
    with pytest.raises(WaiterError, match="InvalidVpcID.NotFound"):
        aws.ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id],
                                                 WaiterConfig={"Delay": 0.01})


def test_a_denied_call_inside_a_wait_names_the_action(aws):
    """An AWS error the waiter does not expect ends the wait with the error's class."""
    def denied(model, params, **kwargs):
        if model.name == "DescribeVpcs":
            return error_result("UnauthorizedOperation", "You are not authorized", 403)
        return None

    aws.ec2.meta.events.register("before-call", denied)
    with pytest.raises(UserError) as failure:
        waits.wait(aws.ec2, "vpc_available", "the VPC", lambda _m: None, delay=0.01,
                   timeout=1, VpcIds=["vpc-12345678"])
    assert "AWS denied ec2:DescribeVpcs while waiting for the VPC" in str(failure.value)
    assert "python -m infra policy" in str(failure.value)


def test_until_visible_retries_only_not_found_and_gives_up_in_bounded_time():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise _client_error("InvalidRouteTableID.NotFound")
        return "done"

    assert waits.until_visible(flaky, "x", lambda _m: None, delay=0.001, budget=1) == "done"
    with pytest.raises(UserError, match="still fails with InvalidGroup.NotFound"):
        waits.until_visible(lambda: (_ for _ in ()).throw(_client_error("InvalidGroup.NotFound")),
                            "x", lambda _m: None, delay=0.001, budget=0.05)
    with pytest.raises(Exception, match="InvalidParameterValue"):
        waits.until_visible(lambda: (_ for _ in ()).throw(_client_error("InvalidParameterValue")),
                            "x", lambda _m: None, delay=0.001, budget=1)


def _client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "injected"}}, "Op")


def test_stricter_definitions_are_not_shared_mutable_state():
    before = copy.deepcopy(waits.STRICTER_WAITERS)
    client = botocore.session.get_session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    waits.waiter_for(client, "instance_terminated")
    assert waits.STRICTER_WAITERS == before
