"""The whole deploy in moto: exactly the seed's resources, with the right properties;
converging re-runs; destroy; status; plan."""

from __future__ import annotations

import json

import pytest
from provision_helpers import (
    EMPTY,
    FULL_STACK,
    STACK,
    Faults,
    count,
    tagged_resources,
    writes,
)

from infra.aws.stack import Stack
from infra.config import PROJECT, TAG_PROJECT, TAG_STACK, stack_filters
from infra.state import state_path

pytestmark = pytest.mark.long


def _quiet(_message: str) -> None:
    pass


def stack_for(aws, settings) -> Stack:
    return Stack(aws, settings, progress=_quiet)


def sg_by_name(aws, name):
    groups = aws.ec2.describe_security_groups(
        Filters=[*stack_filters(STACK), {"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    assert len(groups) == 1, groups
    return groups[0]


def ingress(group) -> set[tuple]:
    rules = set()
    for p in group["IpPermissions"]:
        for r in p.get("IpRanges", []):
            rules.add((p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"]))
        for r in p.get("Ipv6Ranges", []):
            rules.add((p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIpv6"]))
        for r in p.get("UserIdGroupPairs", []):
            rules.add((p["IpProtocol"], p["FromPort"], p["ToPort"], r["GroupId"]))
    return rules


def tags_of(resource) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


@pytest.fixture
def deployed(aws, settings):
    state = stack_for(aws, settings).deploy()
    return state


def test_deploy_builds_exactly_the_seed_stack(aws, settings, deployed):
    assert count(tagged_resources(aws)) == FULL_STACK
    ec2, elbv2 = aws.ec2, aws.elbv2

    # Network: dedicated VPC, two public subnets in two different AZs, IGW, default route.
    vpc = ec2.describe_vpcs(Filters=stack_filters(STACK))["Vpcs"][0]
    assert vpc["CidrBlock"] == settings.vpc_cidr and not vpc.get("IsDefault")
    subnets = ec2.describe_subnets(Filters=stack_filters(STACK))["Subnets"]
    assert {s["VpcId"] for s in subnets} == {vpc["VpcId"]}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    igw = ec2.describe_internet_gateways(Filters=stack_filters(STACK))["InternetGateways"][0]
    assert [a["VpcId"] for a in igw["Attachments"]] == [vpc["VpcId"]]
    table = ec2.describe_route_tables(Filters=stack_filters(STACK))["RouteTables"][0]
    assert {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": igw["InternetGatewayId"]}.items() \
        <= next(r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0").items()
    assert {a["SubnetId"] for a in table["Associations"] if a.get("SubnetId")} == \
        {s["SubnetId"] for s in subnets}

    # Security groups: never the default one; LB: 80 from anywhere; app: 5000 from the LB's
    # group and from the chosen public CIDR; no SSH without a key.
    lb_sg = sg_by_name(aws, f"{STACK}-lb-sg")
    app_sg = sg_by_name(aws, f"{STACK}-app-sg")
    assert ingress(lb_sg) == {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 80, 80, "::/0")}
    assert ingress(app_sg) == {("tcp", 5000, 5000, lb_sg["GroupId"]),
                               ("tcp", 5000, 5000, "203.0.113.7/32")}

    # Instances: two, running, IMDSv2 required, a public IP asked for at launch, one per AZ,
    # in the app group, Amazon Linux 2023 from its SSM parameter, a free-tier type with
    # standard CPU credits.
    reservations = ec2.describe_instances(Filters=[*stack_filters(STACK), {
        "Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 2
    ami = aws.ssm.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    for inst in instances:
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["PublicIpAddress"]
        assert inst["ImageId"] == ami
        assert inst["InstanceType"] == "t3.micro"  # moto's free-tier answer puts it first
        # The groups are given on the primary network interface (with the public IP), so
        # that is where to read them: moto leaves the instance's own SecurityGroups empty
        # in that case, where AWS copies the interface's.
        eni = next(n for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
        assert [g["GroupId"] for g in eni["Groups"]] == [app_sg["GroupId"]]
        assert eni["Association"]["PublicIp"] == inst["PublicIpAddress"]
        assert tags_of(inst)[TAG_PROJECT] == PROJECT and tags_of(inst)[TAG_STACK] == STACK
    credits = ec2.describe_instance_credit_specifications(
        InstanceIds=[i["InstanceId"] for i in instances])["InstanceCreditSpecifications"]
    assert {c["CpuCredits"] for c in credits} == {"standard"}
    assert {i["Placement"]["AvailabilityZone"] for i in instances} == \
        {s["AvailabilityZone"] for s in subnets}

    # Target group: HTTP 5000, instance targets, fast GET /health check; both registered.
    tg = elbv2.describe_target_groups(TargetGroupArns=[deployed["target_group_arn"]])[
        "TargetGroups"][0]
    assert (tg["Protocol"], tg["Port"], tg["TargetType"], tg["VpcId"]) == \
        ("HTTP", 5000, "instance", vpc["VpcId"])
    assert (tg["HealthCheckProtocol"], tg["HealthCheckPath"]) == ("HTTP", "/health")
    assert tg["HealthCheckIntervalSeconds"] <= 10 and tg["HealthyThresholdCount"] == 2
    assert tg["HealthCheckTimeoutSeconds"] < tg["HealthCheckIntervalSeconds"]
    assert tg["Matcher"] == {"HttpCode": "200"}
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "5"  # not AWS's 300
    health = elbv2.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    assert sorted((d["Target"]["Id"], d["Target"]["Port"])
                  for d in health["TargetHealthDescriptions"]) == \
        sorted((i["InstanceId"], 5000) for i in instances)

    # Load balancer: internet-facing ALB in both subnets with its own group; listener 80
    # forwards to the target group on 5000 (the seed's port mapping).
    lb = elbv2.describe_load_balancers(LoadBalancerArns=[deployed["lb_arn"]])["LoadBalancers"][0]
    assert (lb["Scheme"], lb["Type"]) == ("internet-facing", "application")
    assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == {s["SubnetId"] for s in subnets}
    assert lb["SecurityGroups"] == [lb_sg["GroupId"]]
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [(li["Protocol"], li["Port"]) for li in listeners] == [("HTTP", 80)]
    assert listeners[0]["DefaultActions"] == [
        {"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"], **{
            k: v for k, v in listeners[0]["DefaultActions"][0].items()
            if k not in ("Type", "TargetGroupArn")}}]
    assert listeners[0]["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]

    # Tags on the ELBv2 side, too.
    for arn in (lb["LoadBalancerArn"], tg["TargetGroupArn"]):
        tags = tags_of(elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0])
        assert tags[TAG_PROJECT] == PROJECT and tags[TAG_STACK] == STACK


def test_state_file_matches_the_contract(aws, settings, deployed):
    saved = json.loads(state_path(settings.state_dir, STACK).read_text())
    assert saved == deployed
    for key in ("stack", "region", "endpoint_url", "lb_dns", "lb_arn", "target_group_arn",
                "listener_port", "app_port", "instances"):
        assert key in saved
    assert saved["endpoint_url"] is None and saved["region"] == "us-east-1"
    assert (saved["listener_port"], saved["app_port"]) == (80, 5000)
    lb = aws.elbv2.describe_load_balancers(LoadBalancerArns=[saved["lb_arn"]])["LoadBalancers"]
    assert saved["lb_dns"] == lb[0]["DNSName"]
    assert len(saved["instances"]) == 2
    for inst in saved["instances"]:
        assert set(inst) >= {"id", "public_ip", "private_ip", "az"}
    assert {h["state"] for h in saved["target_health"]} == {"healthy"}


def test_deploying_twice_converges_and_creates_nothing(aws, settings, deployed):
    before = tagged_resources(aws)
    faults = Faults().attach(aws)
    again = stack_for(aws, settings).deploy()
    assert tagged_resources(aws) == before
    assert again["lb_arn"] == deployed["lb_arn"]
    assert [i["id"] for i in again["instances"]] == [i["id"] for i in deployed["instances"]]
    changed = writes(faults.calls)
    assert changed == [], f"a converged re-deploy still changed things: {changed}"


def test_lost_state_file_changes_nothing(aws, settings, deployed):
    before = tagged_resources(aws)
    state_path(settings.state_dir, STACK).unlink()
    again = stack_for(aws, settings).deploy()
    assert tagged_resources(aws) == before
    assert again["lb_dns"] == deployed["lb_dns"]
    assert state_path(settings.state_dir, STACK).exists()


def test_redeploy_repairs_drift(aws, settings, deployed):
    """Hand-made damage is found by the describe calls and put right."""
    app_sg = sg_by_name(aws, f"{STACK}-app-sg")
    aws.ec2.revoke_security_group_ingress(
        GroupId=app_sg["GroupId"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
                        "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}])
    aws.ec2.authorize_security_group_ingress(
        GroupId=app_sg["GroupId"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    listener = aws.elbv2.describe_listeners(LoadBalancerArn=deployed["lb_arn"])["Listeners"][0]
    aws.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
    aws.elbv2.deregister_targets(TargetGroupArn=deployed["target_group_arn"],
                                 Targets=[{"Id": deployed["instances"][0]["id"]}])
    aws.ec2.terminate_instances(InstanceIds=[deployed["instances"][1]["id"]])

    state = stack_for(aws, settings).deploy()

    lb_sg = sg_by_name(aws, f"{STACK}-lb-sg")
    assert ingress(sg_by_name(aws, f"{STACK}-app-sg")) == {
        ("tcp", 5000, 5000, lb_sg["GroupId"]), ("tcp", 5000, 5000, "203.0.113.7/32")}
    listeners = aws.elbv2.describe_listeners(LoadBalancerArn=deployed["lb_arn"])["Listeners"]
    assert [(li["Port"], li["DefaultActions"][0]["TargetGroupArn"]) for li in listeners] == \
        [(80, deployed["target_group_arn"])]
    assert count(tagged_resources(aws)) == FULL_STACK
    registered = aws.elbv2.describe_target_health(
        TargetGroupArn=deployed["target_group_arn"])["TargetHealthDescriptions"]
    assert sorted(d["Target"]["Id"] for d in registered) == sorted(i["id"] for i in
                                                                  state["instances"])
    assert deployed["instances"][1]["id"] not in [i["id"] for i in state["instances"]]


def test_instance_count_converges_both_ways(aws, settings):
    settings.instance_count = 3
    state = stack_for(aws, settings).deploy()
    assert len(state["instances"]) == 3
    assert sorted(i["az"] for i in state["instances"]) == ["us-east-1a", "us-east-1a",
                                                          "us-east-1b"]
    settings.instance_count = 1
    state = stack_for(aws, settings).deploy()
    assert len(state["instances"]) == 1
    assert count(tagged_resources(aws))["instance"] == 1
    registered = aws.elbv2.describe_target_health(
        TargetGroupArn=state["target_group_arn"])["TargetHealthDescriptions"]
    assert [d["Target"]["Id"] for d in registered] == [state["instances"][0]["id"]]


def test_destroy_leaves_no_tagged_resource_and_runs_twice(aws, settings, deployed):
    stack = stack_for(aws, settings)
    result = stack.destroy()
    assert count(tagged_resources(aws)) == EMPTY
    assert len(result["deleted"]) == sum(FULL_STACK.values())
    assert not state_path(settings.state_dir, STACK).exists()
    assert stack.destroy()["deleted"] == []
    assert count(tagged_resources(aws)) == EMPTY


def test_destroy_spares_other_stacks(aws, settings, deployed):
    other = type(settings)(**{**settings.__dict__, "stack": "t-other",
                              "vpc_cidr": "10.43.0.0/16"})
    stack_for(aws, other).deploy()
    stack_for(aws, settings).destroy()
    assert count(tagged_resources(aws)) == EMPTY
    assert count(tagged_resources(aws, "t-other")) == FULL_STACK


def test_status_reports_the_stack(aws, settings, deployed):
    status = stack_for(aws, settings).status()
    assert status["load_balancer"]["dns"] == deployed["lb_dns"]
    assert status["load_balancer"]["state"] == "active"
    assert {i["id"] for i in status["instances"]} == {i["id"] for i in deployed["instances"]}
    assert [(h["id"], h["state"]) for h in status["target_health"]] and all(
        h["state"] == "healthy" for h in status["target_health"])
    assert [(li["protocol"], li["port"]) for li in status["listeners"]] == [("HTTP", 80)]
    assert status["target_group"]["port"] == 5000
    assert len(status["subnets"]) == 2
    names = {g["name"] for g in status["security_groups"]}
    assert names == {f"{STACK}-lb-sg", f"{STACK}-app-sg"}


def test_status_of_nothing(aws, settings):
    status = stack_for(aws, settings).status()
    assert status["load_balancer"] is None and status["instances"] == []


def test_status_shows_aws_reason_for_unhealthy_target(aws, settings, deployed):
    from infra.aws.cli import render_status

    aws.ec2.stop_instances(InstanceIds=[deployed["instances"][0]["id"]])
    status = stack_for(aws, settings).status()
    unhealthy = [h for h in status["target_health"] if h["state"] != "healthy"]
    assert unhealthy and unhealthy[0]["id"] == deployed["instances"][0]["id"]
    text = render_status(status)
    assert unhealthy[0]["state"] in text
    if unhealthy[0]["reason"]:
        assert unhealthy[0]["reason"] in text


def test_plan_changes_nothing(aws, settings):
    faults = Faults().attach(aws)
    lines = stack_for(aws, settings).plan()
    assert count(tagged_resources(aws)) == EMPTY
    assert writes(faults.calls) == []
    assert any(line.startswith("create VPC") for line in lines)
    assert sum(line.startswith("create instance") for line in lines) == 2
    assert any("listener HTTP 80" in line for line in lines)


def test_plan_after_deploy_keeps_everything(aws, settings, deployed):
    lines = stack_for(aws, settings).plan()
    assert not [line for line in lines if line.startswith(("create", "delete"))], lines


def test_default_vpc_mode_uses_it_and_never_deletes_it(aws, settings):
    settings.use_default_vpc = True
    state = stack_for(aws, settings).deploy()
    default = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert state["vpc_id"] == default[0]["VpcId"]
    found = count(tagged_resources(aws))
    assert found == {**FULL_STACK, "vpc": 0, "subnet": 0, "igw": 0, "route_table": 0}
    stack_for(aws, settings).destroy()
    assert count(tagged_resources(aws)) == EMPTY
    assert aws.ec2.describe_vpcs(VpcIds=[default[0]["VpcId"]])["Vpcs"]


def test_key_name_opens_ssh_from_the_given_cidr_only(aws, settings):
    aws.ec2.create_key_pair(KeyName="mykey")
    settings.key_name = "mykey"
    stack_for(aws, settings).deploy()
    app_sg = sg_by_name(aws, f"{STACK}-app-sg")
    assert ("tcp", 22, 22, "203.0.113.7/32") in ingress(app_sg)
    assert not [r for r in ingress(app_sg) if r[1] == 22 and r[3] != "203.0.113.7/32"]


def test_public_access_any_opens_5000_to_everyone_and_switching_back_revokes(aws, settings):
    settings.public_access = "any"
    stack_for(aws, settings).deploy()
    assert ("tcp", 5000, 5000, "0.0.0.0/0") in ingress(sg_by_name(aws, f"{STACK}-app-sg"))
    settings.public_access = "198.51.100.0/24"
    stack_for(aws, settings).deploy()
    rules = ingress(sg_by_name(aws, f"{STACK}-app-sg"))
    assert ("tcp", 5000, 5000, "0.0.0.0/0") not in rules
    assert ("tcp", 5000, 5000, "198.51.100.0/24") in rules


def test_load_balancer_provisions_while_the_instances_boot(aws, settings):
    """The ALB is created before the instances are launched, and nothing waits for either
    until both are on their way: the waits overlap, as they dominate the time on AWS."""
    faults = Faults().attach(aws)
    stack_for(aws, settings).deploy()
    calls = faults.calls
    create_lb = calls.index("elbv2.CreateLoadBalancer")
    first_run = calls.index("ec2.RunInstances")
    last_run = len(calls) - 1 - calls[::-1].index("ec2.RunInstances")
    assert create_lb < first_run
    assert "elbv2.DescribeLoadBalancers" not in calls[create_lb:last_run]  # no LB wait yet
    waits = [i for i, c in enumerate(calls) if c in ("ec2.DescribeInstances",
                                                     "elbv2.DescribeLoadBalancers")]
    assert [i for i in waits if i > last_run]


def test_destroy_without_the_state_file(aws, settings, deployed):
    state_path(settings.state_dir, STACK).unlink()
    stack_for(aws, settings).destroy()
    assert count(tagged_resources(aws)) == EMPTY
