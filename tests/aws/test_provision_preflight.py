"""Preflight: the real-AWS rules moto does not enforce, refused before anything is created."""

from __future__ import annotations

import dataclasses

import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from provision_helpers import EMPTY, Faults, count, error_result, tagged_resources, writes

from infra.aws import preflight
from infra.aws.clients import Clients, Target
from infra.aws.placement import choose_placement
from infra.aws.stack import Stack
from infra.config import Settings
from infra.errors import UserError


def _quiet(_message: str) -> None:
    pass


@pytest.mark.parametrize("stack", ["", "1abc", "has_underscore", "a" * 21, "sp ace", "ünï"])
def test_bad_stack_names_are_refused(stack):
    with pytest.raises(UserError, match="bad stack name"):
        preflight.check_settings(Settings(stack=stack))


@pytest.mark.parametrize("stack, match", [("internal-x", "internal-"), ("sg-x", "sg-")])
def test_names_aws_reserves(stack, match):
    with pytest.raises(UserError, match=match):
        preflight.check_settings(Settings(stack=stack))


@pytest.mark.parametrize("name, ok", [
    ("seed-lb-alb", True), ("a" * 32, True), ("a" * 33, False), ("-lead", False),
    ("trail-", False), ("under_score", False), ("dot.ted", False), ("x", True),
])
def test_load_balancer_and_target_group_name_rule(name, ok):
    assert bool(preflight.ELB_NAME_RE.match(name)) is ok


@pytest.mark.parametrize("count", [0, -1, 11])
def test_instance_count_out_of_range(count):
    with pytest.raises(UserError, match="instance count"):
        preflight.check_settings(Settings(instance_count=count))


@pytest.mark.parametrize("change, rule", [
    ({"health_check_interval": 4}, "interval"),
    ({"health_check_interval": 301}, "interval"),
    ({"health_check_timeout": 1}, "timeout"),
    ({"health_check_timeout": 121, "health_check_interval": 300}, "timeout"),
    ({"health_check_timeout": 5, "health_check_interval": 5}, "below the interval"),
    ({"healthy_threshold": 1}, "healthy threshold"),
    ({"healthy_threshold": 11}, "healthy threshold"),
    ({"unhealthy_threshold": 1}, "unhealthy threshold"),
    ({"health_check_matcher": "500"}, "matcher"),
    ({"health_check_matcher": "199"}, "matcher"),
    ({"health_check_matcher": "300-200"}, "matcher"),
    ({"health_check_matcher": "ok"}, "matcher"),
    ({"health_check_path": "health"}, "path"),
])
def test_health_check_outside_aws_ranges(change, rule):
    with pytest.raises(UserError, match=rule):
        preflight.check_settings(Settings(**change))


@pytest.mark.parametrize("matcher", ["200", "200,302", "200-299", "200-499"])
def test_health_check_matchers_aws_accepts(matcher):
    preflight.check_settings(Settings(health_check_matcher=matcher))


def test_defaults_pass_and_are_tuned_fast():
    s = Settings()
    preflight.check_settings(s)
    assert s.health_check_interval <= 10 and s.healthy_threshold == 2
    assert s.instance_count == 2 and s.app_port == 5000 and s.listener_port == 80


@pytest.mark.parametrize("value, cidr", [
    ("me", None), ("any", "0.0.0.0/0"), ("203.0.113.7", "203.0.113.7/32"),
    ("198.51.100.0/24", "198.51.100.0/24"), ("2001:db8::1", "2001:db8::1/128"),
])
def test_public_access_choices(value, cidr):
    assert preflight.public_cidr_choice(value) == cidr


def test_bad_public_access_is_refused():
    with pytest.raises(UserError, match="public-access"):
        preflight.check_settings(Settings(public_access="everyone"))


def test_regions():
    assert preflight.check_region("us-east-1") == "us-east-1"
    with pytest.raises(UserError, match="unknown AWS region 'mars-east-1'"):
        preflight.check_region("mars-east-1")
    with pytest.raises(UserError, match="no AWS region"):
        preflight.check_region(None)


def test_missing_credentials_one_clear_line(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    clients = Clients(Target("us-east-1", "http://127.0.0.1:9"))
    with pytest.raises(UserError) as failure:
        preflight.check_credentials(clients)
    assert "no AWS credentials" in str(failure.value) and "\n" not in str(failure.value)


def test_refused_credentials_one_clear_line(aws):
    faults = Faults().attach(aws)
    faults.rules.append(lambda op, p: "InvalidClientTokenId" if op == "sts.GetCallerIdentity"
                        else None)
    with pytest.raises(UserError, match="AWS does not accept these credentials "
                       ".InvalidClientTokenId"):
        preflight.check_credentials(aws)


def test_placement_prefers_t3_micro_in_two_azs(aws, settings):
    placement = choose_placement(aws, settings)
    assert placement.instance_type == "t3.micro"
    assert len(set(placement.zones)) == 2


def _offerings_answer(offered: dict[str, list[str]]):
    """A before-call answer for DescribeInstanceTypeOfferings: type -> AZs offering it."""
    body = {"InstanceTypeOfferings": [
        {"InstanceType": t, "LocationType": "availability-zone", "Location": z}
        for t, zones in offered.items() for z in zones]}

    def rule(model, params, **kwargs):
        if model.name == "DescribeInstanceTypeOfferings":
            return AWSResponse("https://injected.invalid/", 200, {}, None), body
        return None

    return rule


def _free_tier_answer(*types: str):
    """A before-call answer for DescribeInstanceTypes with the free-tier-eligible filter:
    the account's eligible types, in the order given, shaped as EC2 describes them (t4g: arm64,
    the others x86_64)."""
    body = {"InstanceTypes": [
        {"InstanceType": t, "FreeTierEligible": True,
         "BurstablePerformanceSupported": t.startswith("t"),
         "ProcessorInfo": {"SupportedArchitectures":
                           ["arm64"] if t.startswith("t4g.") else ["x86_64"]},
         "MemoryInfo": {"SizeInMiB": 1024}} for t in types]}

    def rule(model, params, **kwargs):
        if model.name == "DescribeInstanceTypes" and "free-tier" in str(params.get("body")):
            return AWSResponse("https://injected.invalid/", 200, {}, None), body
        return None

    return rule


def test_placement_falls_back_to_t2_micro_where_t3_is_missing(aws, settings):
    aws.session.events.register("before-call", _free_tier_answer("t3.micro", "t2.micro"))
    aws.session.events.register("before-call", _offerings_answer(
        {"t3.micro": ["us-east-1a"], "t2.micro": ["us-east-1b", "us-east-1c"]}))
    placement = choose_placement(aws, settings)
    assert (placement.instance_type, placement.zones) == ("t2.micro",
                                                          ("us-east-1b", "us-east-1c"))
    assert placement.burstable and "free-tier eligible" in placement.why


def test_placement_follows_the_accounts_free_tier_answer(aws, settings):
    """Under the legacy offer, some accounts have t2.micro as their only free type."""
    aws.session.events.register("before-call", _free_tier_answer("t2.micro"))
    placement = choose_placement(aws, settings)
    assert placement.instance_type == "t2.micro" and placement.burstable
    assert "t2.micro" in placement.why and "EC2's answer" in placement.why


def test_placement_without_any_free_type_says_it_bills(aws, settings):
    aws.session.events.register("before-call", _free_tier_answer())
    placement = choose_placement(aws, settings)
    assert placement.instance_type == "t3.micro"
    assert "no free-tier-eligible" in placement.why and "$0.0104/h" in placement.why


def test_an_arm_only_free_tier_answer_boots_the_arm64_ami(aws, settings):
    """An arm64 type never gets the x86_64 AMI: it gets Amazon Linux 2023's arm64 one (the
    app's compiled wheels exist for cp311 aarch64, hash-pinned in requirements.lock)."""
    aws.session.events.register("before-call", _free_tier_answer("t4g.micro"))
    placement = choose_placement(aws, settings)
    assert (placement.instance_type, placement.architecture) == ("t4g.micro", "arm64")
    arm64 = preflight.resolve_image(aws, placement.architecture)
    image = aws.ec2.describe_images(ImageIds=[arm64])["Images"][0]
    assert image["Architecture"] == "arm64" and arm64 != preflight.resolve_image(aws)


def test_the_free_tier_answer_in_any_order_gives_the_same_choice(aws, settings):
    """AWS lists the eligible types in no fixed order (t4g.small first, in a public answer:
    RhinoSecurityLabs/cloudgoat#375)."""
    answer = ["t4g.small", "c7i-flex.large", "t4g.micro", "t3.micro", "t3.small",
              "m7i-flex.large"]
    chosen = set()
    for order in (answer, answer[::-1], sorted(answer)):
        with mock_aws():
            clients = Clients(Target("us-east-1", None))
            clients.session.events.register("before-call", _free_tier_answer(*order))
            placement = choose_placement(clients, settings)
            chosen.add((placement.instance_type, placement.architecture))
    assert chosen == {("t3.micro", "x86_64")}


def test_explicit_instance_type_wins_and_says_when_it_bills(aws, settings):
    chosen = choose_placement(aws, dataclasses.replace(settings,
                                                                 instance_type="t3.medium"))
    assert chosen.instance_type == "t3.medium" and chosen.burstable
    assert "--instance-type" in chosen.why and "NOT free-tier eligible" in chosen.why


def test_an_explicit_arm_type_boots_the_arm64_ami(aws, settings):
    placement = choose_placement(
        aws, dataclasses.replace(settings, instance_type="t4g.micro"))
    assert (placement.instance_type, placement.architecture) == ("t4g.micro", "arm64")


def test_a_type_no_amazon_linux_ami_runs_is_refused(aws, settings):
    with pytest.raises(UserError, match="mac1.metal runs x86_64_mac"):
        choose_placement(aws, dataclasses.replace(settings,
                                                            instance_type="mac1.metal"))


def test_a_learner_lab_chooses_and_accepts_only_nano_to_large(aws, settings):
    aws.session.events.register("before-call", _free_tier_answer("m7i-flex.xlarge", "t3.micro"))
    placement = choose_placement(aws, settings, learner_lab=True)
    assert placement.instance_type == "t3.micro"
    with pytest.raises(UserError, match="at most 9 instances, of sizes nano to large"):
        choose_placement(aws, dataclasses.replace(settings, instance_type="t3.xlarge"),
                                   learner_lab=True)


def test_placement_avoids_an_az_without_the_type(aws, settings):
    """us-east-1e has no t2.micro on real AWS; choosing it would fail at run_instances."""
    settings = dataclasses.replace(settings, instance_type="t2.micro")
    aws.session.events.register("before-call", _offerings_answer(
        {"t2.micro": ["us-east-1c", "us-east-1d"]}))
    placement = choose_placement(aws, settings)
    assert "us-east-1e" not in placement.zones and placement.zones == ("us-east-1c",
                                                                       "us-east-1d")


def test_one_az_is_not_enough_for_an_alb_and_nothing_is_created(aws, settings):
    aws.session.events.register("before-call", _offerings_answer(
        {"t3.micro": ["us-east-1a"], "t2.micro": ["us-east-1a"]}))
    faults = Faults().attach(aws)
    with pytest.raises(UserError, match="two Availability Zones"):
        Stack(aws, settings, progress=_quiet).deploy()
    assert writes(faults.calls) == []
    assert count(tagged_resources(aws)) == EMPTY


def test_unknown_instance_type_is_refused(aws, settings):
    settings = dataclasses.replace(settings, instance_type="z9.nonexistent")
    with pytest.raises(UserError, match="z9.nonexistent"):
        choose_placement(aws, settings)


def test_localstack_without_elbv2_names_both_ways_out(aws, settings):
    """LocalStack's free tier answers ELBv2 calls with HTTP 501 and this kind of message."""
    message = ("API for service 'elbv2' not yet implemented or pro feature - please check "
               "https://docs.localstack.cloud/references/coverage/ for further information")

    def no_elbv2(model, params, **kwargs):
        if model.service_model.service_name == "elbv2":
            return error_result("InternalFailure", message, status=501)
        return None

    aws.session.events.register("before-call", no_elbv2)
    faults = Faults().attach(aws)
    with pytest.raises(UserError) as failure:
        Stack(aws, settings, progress=_quiet).deploy()
    text = str(failure.value)
    assert "LOCALSTACK_AUTH_TOKEN" in text and "moto" in text and "\n" not in text
    assert writes(faults.calls) == []


@pytest.mark.parametrize("change, match", [
    ({"stack": "bad_name"}, "bad stack name"),
    ({"instance_count": 0}, "instance count"),
    ({"health_check_timeout": 10}, "health check"),
])
def test_bad_settings_make_no_aws_call_at_all(aws, settings, change, match):
    faults = Faults().attach(aws)
    with pytest.raises(UserError, match=match):
        Stack(aws, dataclasses.replace(settings, **change), progress=_quiet).deploy()
    assert faults.calls == []


def test_deployer_ip_is_never_looked_up_against_an_emulator_or_in_tests():
    emulator = Clients(Target("us-east-1", "http://127.0.0.1:5001"))
    with pytest.raises(RuntimeError):
        preflight.deployer_cidr(emulator)
    aws_like = Clients(Target("us-east-1", None))  # SEEDLB_LOOPBACK_ONLY=1 in tests
    with pytest.raises(RuntimeError):
        preflight.deployer_cidr(aws_like)


def test_me_against_real_aws_uses_the_looked_up_ip(aws, settings, monkeypatch):
    """On real AWS (no endpoint), 'me' puts the deployer's /32 on 5000 and on SSH."""
    monkeypatch.setattr(preflight, "deployer_cidr", lambda clients: "198.51.100.23/32")
    aws.ec2.create_key_pair(KeyName="k")
    settings = dataclasses.replace(settings, public_access="me", key_name="k")
    Stack(aws, settings, progress=_quiet).deploy()
    group = aws.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["t-prov-app-sg"]}])["SecurityGroups"][0]
    cidrs = {(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"]
             for r in p.get("IpRanges", [])}
    assert cidrs == {(5000, "198.51.100.23/32"), (22, "198.51.100.23/32")}


def test_default_vpc_needs_default_subnets_in_two_zones(aws, settings):
    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    for subnet in subnets["Subnets"][1:]:
        aws.ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    settings = dataclasses.replace(settings, use_default_vpc=True)
    with pytest.raises(UserError, match="needs two"):
        Stack(aws, settings, progress=_quiet).deploy()


def test_missing_key_pair_is_refused_before_anything_is_created(aws, settings):
    faults = Faults().attach(aws)
    settings = dataclasses.replace(settings, key_name="nokey")
    with pytest.raises(UserError, match="no EC2 key pair named 'nokey'"):
        Stack(aws, settings, progress=_quiet).deploy()
    assert writes(faults.calls) == []
