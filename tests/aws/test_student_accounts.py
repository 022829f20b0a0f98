"""The accounts students really have, played by the fault proxy (strict_aws.StrictAWS) in
front of a moto server, with AWS's own answers: an AWS Academy Learner Lab (two regions,
instance sizes and count, an ended session's voc-cancel-cred deny) and the 2025 free plan
(only eligible types, listed in any order, t4g among them). Each refusal is one clear line,
from the real `python -m infra` in a subprocess, with nothing created."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
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
from strict_aws import StrictAWS, Strictness

from infra.config import AMI_PARAMETERS
from infra.state import read_state

pytestmark = [pytest.mark.integration, pytest.mark.long]

# An account on the free plan, as AWS listed its eligible types (RhinoSecurityLabs/cloudgoat#375).
FREE_PLAN_TYPES = ("t4g.small", "c7i-flex.large", "t4g.micro", "t3.micro", "t3.small",
                   "m7i-flex.large")
LAB_ENDED = "your lab session has ended: start the lab again and copy the new credentials"
LAB_REGIONS = "this account allows only us-east-1 and us-west-2 (AWS Academy Learner Lab)"



def test_a_learner_lab_region_other_than_its_two_is_named_before_anything_exists(moto_server,
                                                                              tmp_path):
    with StrictAWS(moto_server, Strictness(learner_lab=True)) as proxy:
        refused = run_cli(["deploy", "--stack", "lab", "--region", "eu-west-1",
                           "--state-dir", str(tmp_path)], endpoint=proxy.url)
        assert refused.returncode == 1
        line = one_error_line(refused)
        assert LAB_REGIONS in line and "--region us-east-1" in line
        assert "Nothing was created" in line
        assert proxy.injected.faults["lab_region"] >= 1
        status = run_cli(["status", "--stack", "lab", "--region", "eu-west-1"],
                         endpoint=proxy.url)
        assert LAB_REGIONS in one_error_line(status)
        allowed = run_cli(["plan", "--stack", "lab", "--region", "us-west-2"],
                          endpoint=proxy.url)
        assert allowed.returncode == 0, allowed.stderr
    assert anything_billable_or_not(moto_view(moto_server, "eu-west-1")) == NOTHING
    assert read_state(tmp_path, "lab") is None


def test_an_ended_lab_session_says_start_the_lab_again_in_deploy_status_and_destroy(
        moto_server, tmp_path):
    """Learner Lab attaches an explicit deny, voc-cancel-cred, when its session ends: STS
    still answers, every other call is denied. Deploy, status and destroy each say so in one
    line; what was built stays as it was."""
    stack = ["--stack", "ended", "--state-dir", str(tmp_path)]
    with StrictAWS(moto_server, Strictness(lab_session_ended=True)) as proxy:
        deploy = run_cli(["deploy", *stack], endpoint=proxy.url)
        assert deploy.returncode == 1
        line = one_error_line(deploy)
        assert LAB_ENDED in line and "Nothing was created" in line
        assert count(tagged_resources(moto_view(moto_server), "ended")) == EMPTY

        proxy.reset(Strictness(learner_lab=True))  # a new session: the lab works
        built = run_cli(["deploy", *stack, "--no-wait-healthy"], endpoint=proxy.url)
        assert built.returncode == 0, built.stderr

        proxy.reset(Strictness(lab_session_ended=True))  # ... and it ends
        for command in (["status", "--stack", "ended"], ["destroy", *stack]):
            result = run_cli(command, endpoint=proxy.url)
            assert result.returncode != 0
            assert LAB_ENDED in one_error_line(result), command
        assert proxy.injected.faults["lab_session_ended"] >= 2
        assert count(tagged_resources(moto_view(moto_server), "ended")) == FULL_STACK

        proxy.reset(Strictness(learner_lab=True))
        assert run_cli(["destroy", *stack], endpoint=proxy.url).returncode == 0
    assert count(tagged_resources(moto_view(moto_server), "ended")) == EMPTY


def test_a_learner_lab_refuses_a_size_above_large_and_a_tenth_instance_first(moto_server,
                                                                            tmp_path):
    moto = moto_view(moto_server)
    image = moto.ssm.get_parameter(Name=AMI_PARAMETERS["x86_64"])["Parameter"]["Value"]
    others = [i["InstanceId"] for i in moto.ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=8, MaxCount=8)["Instances"]]
    try:
        with StrictAWS(moto_server, Strictness(learner_lab=True)) as proxy:
            stack = ["--stack", "crowd", "--state-dir", str(tmp_path)]
            big = run_cli(["deploy", *stack, "--instance-type", "t3.xlarge"],
                          endpoint=proxy.url)
            line = one_error_line(big)
            assert "at most 9 instances, of sizes nano to large (AWS Academy Learner Lab)" \
                in line and "t3.xlarge" in line
            many = run_cli(["deploy", *stack], endpoint=proxy.url)
            line = one_error_line(many)
            assert "at most 9 instances" in line and "8 other instances run already" in line
            assert [r for r in proxy.injected.requests if r.action == "RunInstances"
                    and not r.dry_run] == []
        assert count(tagged_resources(moto, "crowd")) == EMPTY
    finally:
        moto.ec2.terminate_instances(InstanceIds=others)


def test_the_free_plan_refuses_a_type_that_is_not_eligible_and_says_why(moto_server, tmp_path):
    strict = Strictness(free_plan=True, free_tier_only=FREE_PLAN_TYPES)
    with StrictAWS(moto_server, strict) as proxy:
        result = run_cli(["deploy", "--stack", "plan25", "--instance-type", "t3.medium",
                          "--state-dir", str(tmp_path)], endpoint=proxy.url)
        assert result.returncode == 1
        line = one_error_line(result)
        assert "not eligible for this account's free plan" in line
        assert "InvalidParameterCombination" in line and "Nothing was created" in line
        assert "Name=free-tier-eligible,Values=true" in line and "Drop --instance-type" in line
        assert proxy.injected.faults["free_plan"] == 1  # the dry run, not a launch
    assert anything_billable_or_not(moto_view(moto_server)) == NOTHING


@pytest.mark.parametrize("eligible, launched, architecture", [
    (FREE_PLAN_TYPES, "t3.micro", "x86_64"),  # t4g listed first: still t3.micro, x86_64 AMI
    (("t4g.small", "t4g.micro"), "t4g.micro", "arm64"),  # arm64 only: the arm64 AMI
], ids=["t4g-first", "arm64-only"])
def test_a_free_tier_answer_in_any_order_launches_a_type_on_its_own_ami(
        moto_server, tmp_path, eligible, launched, architecture):
    strict = Strictness(free_plan=True, free_tier_only=eligible, architectures_must_match=True)
    stack = ["--stack", "anyorder", "--state-dir", str(tmp_path)]
    with StrictAWS(moto_server, strict) as proxy:
        result = run_cli(["deploy", *stack, "--count", "1", "--no-wait-healthy"],
                         endpoint=proxy.url)
        assert result.returncode == 0, result.stderr
        assert proxy.injected.faults["free_plan"] == proxy.injected.faults["architecture"] == 0
        instance = moto_view(moto_server).ec2.describe_instances(InstanceIds=[
            read_state(tmp_path, "anyorder")["instances"][0]["id"]])["Reservations"][0][
            "Instances"][0]
        image = moto_view(moto_server).ec2.describe_images(ImageIds=[instance["ImageId"]])
        assert run_cli(["destroy", *stack], endpoint=proxy.url).returncode == 0
    assert instance["InstanceType"] == launched
    assert image["Images"][0]["Architecture"] == architecture
    assert f"instance type {launched}: free-tier eligible for this account" in result.stdout
    assert ", ".join(sorted(eligible)) in result.stdout  # EC2's whole answer, named


def test_the_proxy_refuses_an_arm64_type_on_the_x86_ami_as_ec2_does(moto_server):
    """The check the two tests above rely on can fail: EC2's own refusal, for a dry run too."""
    with StrictAWS(moto_server, Strictness(architectures_must_match=True)) as proxy:
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=proxy.url)
        x86 = moto_view(moto_server).ssm.get_parameter(
            Name=AMI_PARAMETERS["x86_64"])["Parameter"]["Value"]
        with pytest.raises(ClientError, match="architecture 'arm64' of the specified instance "
                           "type does not match the architecture 'x86_64'"):
            ec2.run_instances(ImageId=x86, InstanceType="t4g.micro", MinCount=1, MaxCount=1,
                              DryRun=True)
