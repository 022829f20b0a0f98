"""The doctor against a hand-built moto stack: healthy, then broken one way per test."""

from __future__ import annotations

import boto3
import pytest
from doctor_seed import APP_PORT, REGION, aws_health, inject_target_health

from infra.doctor.diagnosis import diagnose
from infra.doctor.findings import ERROR, INFO, WARNING, has_errors

pytestmark = pytest.mark.long


def codes(findings, severity=None):
    return {f.code for f in findings if severity is None or f.severity == severity}


def test_healthy_hand_built_stack_has_no_error_or_warning(clients, seed):
    findings = diagnose(clients, lb=seed.lb_name)
    assert [f for f in findings if f.severity != INFO] == []
    assert codes(findings) == {"LB_FOUND", "TARGETS_HEALTHY"}
    healthy = next(f for f in findings if f.code == "TARGETS_HEALTHY")
    assert "2 of 2" in healthy.message
    assert not has_errors(findings)


# -- faults: each function breaks the healthy stack in one way ---------------------------


def internal_lb(s):
    s.elbv2.delete_load_balancer(LoadBalancerArn=s.lb_arn)
    lb = s.elbv2.create_load_balancer(Name=s.named("inside-alb"), Subnets=s.subnet_ids,
                                      SecurityGroups=[s.lb_sg], Scheme="internal",
                                      Type="application")["LoadBalancers"][0]
    s.elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": s.tg_arn}])
    return s.named("inside-alb")


def lb_sg_without_80(s):
    s.ec2.revoke_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    s.ec2.authorize_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


def lb_sg_80_only_from_one_address(s):
    s.ec2.revoke_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    s.ec2.authorize_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}])


def lb_uses_default_sg(s):
    s.elbv2.set_security_groups(LoadBalancerArn=s.lb_arn, SecurityGroups=[s.default_sg])


def instances_use_default_sg(s):
    for iid in s.instance_ids:
        s.ec2.modify_instance_attribute(InstanceId=iid, Groups=[s.default_sg])


def no_listener(s):
    s.elbv2.delete_listener(ListenerArn=s.listener_arn)


def listener_on_app_port(s):
    s.elbv2.delete_listener(ListenerArn=s.listener_arn)
    s.elbv2.create_listener(LoadBalancerArn=s.lb_arn, Protocol="HTTP", Port=APP_PORT,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": s.tg_arn}])


def listener_forwards_to_empty_group(s):
    s.forward_to(s.new_target_group("other-tg"))


def listener_fixed_response(s):
    s.elbv2.modify_listener(ListenerArn=s.listener_arn, DefaultActions=[{
        "Type": "fixed-response",
        "FixedResponseConfig": {"StatusCode": "200", "ContentType": "text/plain",
                                "MessageBody": "hello"}}])


def target_group_on_port_80(s):
    tg80 = s.new_target_group("seed-tg-80", port=80)
    s.elbv2.register_targets(TargetGroupArn=tg80, Targets=[{"Id": i} for i in s.instance_ids])
    s.forward_to(tg80)


def health_check_on_other_port(s):
    s.elbv2.modify_target_group(TargetGroupArn=s.tg_arn, HealthCheckPort="8080")


def matcher_without_200(s):
    s.elbv2.modify_target_group(TargetGroupArn=s.tg_arn, Matcher={"HttpCode": "301-302"})


def explicit_subnet_route_table_without_igw(s):
    bare = s.ec2.create_route_table(VpcId=s.vpc_id)["RouteTable"]["RouteTableId"]
    assoc = s.ec2.describe_route_tables(RouteTableIds=[s.public_rt_id])["RouteTables"][0][
        "Associations"][0]["RouteTableAssociationId"]
    s.ec2.replace_route_table_association(AssociationId=assoc, RouteTableId=bare)


def main_route_table_without_igw(s):
    s.ec2.delete_route(RouteTableId=s.main_rt_id, DestinationCidrBlock="0.0.0.0/0")


def instance_sg_without_lb(s):
    s.ec2.revoke_security_group_ingress(GroupId=s.inst_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": APP_PORT, "ToPort": APP_PORT,
        "UserIdGroupPairs": [{"GroupId": s.lb_sg}]}])


def instance_sg_wrong_port(s):
    instance_sg_without_lb(s)
    s.ec2.authorize_security_group_ingress(GroupId=s.inst_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "UserIdGroupPairs": [{"GroupId": s.lb_sg}]}])


def lb_sg_no_egress(s):
    s.ec2.revoke_security_group_egress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


def instance_stopped(s):
    s.ec2.stop_instances(InstanceIds=[s.instance_ids[0]])


def instance_terminated(s):
    s.ec2.terminate_instances(InstanceIds=[s.instance_ids[0]])


def no_targets(s):
    s.elbv2.deregister_targets(TargetGroupArn=s.tg_arn,
                               Targets=[{"Id": i, "Port": APP_PORT} for i in s.instance_ids])


def one_target(s):
    s.elbv2.deregister_targets(TargetGroupArn=s.tg_arn,
                               Targets=[{"Id": s.instance_ids[1], "Port": APP_PORT}])


def instance_in_zone_without_lb(s):
    zone = [z["ZoneName"] for z in s.ec2.describe_availability_zones()["AvailabilityZones"]][2]
    subnet = s.ec2.create_subnet(VpcId=s.vpc_id, CidrBlock="10.0.9.0/24",
                                 AvailabilityZone=zone)["Subnet"]["SubnetId"]
    third = s.ec2.run_instances(ImageId=s.ami, InstanceType="t2.micro", MinCount=1, MaxCount=1,
                                SubnetId=subnet, SecurityGroupIds=[s.inst_sg])["Instances"][0]
    s.elbv2.register_targets(TargetGroupArn=s.tg_arn,
                             Targets=[{"Id": third["InstanceId"], "Port": APP_PORT}])


def network_load_balancer(s):
    lb = s.elbv2.create_load_balancer(Name=s.named("nlb"), Subnets=s.subnet_ids,
                                      Type="network")["LoadBalancers"][0]
    tg = s.elbv2.create_target_group(Name=s.named("tcp-tg"), Protocol="TCP", Port=APP_PORT,
                                     VpcId=s.vpc_id)["TargetGroups"][0]["TargetGroupArn"]
    s.elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in s.instance_ids])
    s.elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=80,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    return s.named("nlb")


def https_on_port_80(s):
    cert = boto3.client("acm", region_name=REGION).request_certificate(
        DomainName="seed.example.com")["CertificateArn"]
    s.elbv2.modify_listener(ListenerArn=s.listener_arn, Protocol="HTTPS", Port=80,
                            Certificates=[{"CertificateArn": cert}])


def target_group_https(s):
    tg = s.elbv2.create_target_group(
        Name=s.named("tls-tg"), Protocol="HTTPS", Port=APP_PORT, VpcId=s.vpc_id,
    )["TargetGroups"][0]["TargetGroupArn"]
    s.elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in s.instance_ids])
    s.forward_to(tg)


def instance_in_private_subnet(s):
    """An instance moved to a subnet (in an enabled AZ) whose route table has no IGW."""
    private = s.ec2.create_subnet(VpcId=s.vpc_id, CidrBlock="10.0.8.0/24",
                                  AvailabilityZone=s.zones[0])["Subnet"]["SubnetId"]
    bare = s.ec2.create_route_table(VpcId=s.vpc_id)["RouteTable"]["RouteTableId"]
    s.ec2.associate_route_table(RouteTableId=bare, SubnetId=private)
    inside = s.ec2.run_instances(ImageId=s.ami, InstanceType="t2.micro", MinCount=1, MaxCount=1,
                                 SubnetId=private, SecurityGroupIds=[s.inst_sg])["Instances"][0]
    s.elbv2.deregister_targets(TargetGroupArn=s.tg_arn,
                               Targets=[{"Id": s.instance_ids[1], "Port": APP_PORT}])
    s.elbv2.register_targets(TargetGroupArn=s.tg_arn,
                             Targets=[{"Id": inside["InstanceId"], "Port": APP_PORT}])


FAULTS = [
    (network_load_balancer, "LB_NOT_APPLICATION", ERROR),
    (https_on_port_80, "LISTENER_NOT_HTTP", ERROR),
    (target_group_https, "TG_PROTOCOL", ERROR),
    (instance_in_private_subnet, "INSTANCE_SUBNET_NO_IGW_ROUTE", WARNING),
    (internal_lb, "LB_INTERNAL", ERROR),
    (lb_sg_without_80, "LB_SG_NO_HTTP", ERROR),
    (lb_sg_80_only_from_one_address, "LB_SG_NO_HTTP", ERROR),
    (lb_uses_default_sg, "DEFAULT_SG_ON_LB", ERROR),
    (instances_use_default_sg, "DEFAULT_SG_ON_INSTANCE", WARNING),
    (no_listener, "LISTENER_MISSING", ERROR),
    (listener_on_app_port, "LISTENER_WRONG_PORT", ERROR),
    (listener_forwards_to_empty_group, "LISTENER_WRONG_TARGET_GROUP", ERROR),
    (listener_fixed_response, "LISTENER_NOT_FORWARDING", ERROR),
    (target_group_on_port_80, "TG_PORT_MISMATCH", ERROR),
    (health_check_on_other_port, "HEALTH_CHECK_PORT", ERROR),
    (matcher_without_200, "HEALTH_CHECK_MATCHER", WARNING),
    (explicit_subnet_route_table_without_igw, "SUBNET_NO_IGW_ROUTE", ERROR),
    (main_route_table_without_igw, "SUBNET_NO_IGW_ROUTE", ERROR),
    (instance_sg_without_lb, "INSTANCE_SG_BLOCKS_LB", ERROR),
    (instance_sg_wrong_port, "INSTANCE_SG_BLOCKS_LB", ERROR),
    (lb_sg_no_egress, "LB_SG_EGRESS_BLOCKED", ERROR),
    (instance_stopped, "INSTANCE_NOT_RUNNING", ERROR),
    # AWS (and moto) deregister a terminated instance: one target is left
    (instance_terminated, "TARGETS_ONLY_ONE", WARNING),
    (no_targets, "TARGETS_NONE", ERROR),
    (one_target, "TARGETS_ONLY_ONE", WARNING),
    (instance_in_zone_without_lb, "INSTANCE_AZ_NOT_ENABLED", ERROR),
]


@pytest.mark.parametrize(("fault", "code", "severity"), FAULTS,
                         ids=[f[0].__name__ for f in FAULTS])
def test_each_fault_is_found_and_named(clients, seed, fault, code, severity):
    lb = fault(seed) or seed.lb_name
    findings = diagnose(clients, lb=lb)
    named = [f for f in findings if f.code == code]
    assert named, f"{code} not found in {[f.render() for f in findings]}"
    assert {f.severity for f in named} == {severity}
    assert all(f.fix for f in named), "every problem comes with its fix"
    if severity == ERROR:
        assert has_errors(findings), "an error-level finding makes the doctor exit 1"


@pytest.mark.parametrize("fault", [one_target, matcher_without_200])
def test_warning_only_faults_are_not_errors(clients, seed, fault):
    fault(seed)
    findings = diagnose(clients, lb=seed.lb_name)
    assert codes(findings, WARNING) and not has_errors(findings)


def test_subnet_finding_names_the_broken_subnet(clients, seed):
    main_route_table_without_igw(seed)
    [finding] = [f for f in diagnose(clients, lb=seed.lb_name) if f.code == "SUBNET_NO_IGW_ROUTE"]
    assert seed.subnet_ids[1] in finding.message
    assert seed.subnet_ids[0] not in finding.message  # it has its own public route table
    assert seed.main_rt_id in finding.message


def test_stopped_instance_is_also_reported_by_target_health(clients, seed):
    instance_stopped(seed)
    findings = diagnose(clients, lb=seed.lb_name)
    assert "TARGET_INVALID_STATE" in codes(findings, ERROR)  # moto's own reason code
    [stopped] = [f for f in findings if f.code == "INSTANCE_NOT_RUNNING"]
    assert seed.instance_ids[0] in stopped.message and "stopped" in stopped.message


def test_target_that_is_no_instance_is_reported(clients, seed):
    gone = "i-0123456789abcdef0"
    inject_target_health(clients, aws_health([seed.instance_ids[0], gone], "healthy"))
    [finding] = [f for f in diagnose(clients, lb=seed.lb_name)
                 if f.code == "INSTANCE_NOT_RUNNING"]
    assert gone in finding.message and finding.severity == ERROR


def test_port_mismatch_names_both_ports(clients, seed):
    target_group_on_port_80(seed)
    [finding] = [f for f in diagnose(clients, lb=seed.lb_name) if f.code == "TG_PORT_MISMATCH"]
    assert "80" in finding.message and str(APP_PORT) in finding.message


@pytest.mark.parametrize("source", ["vpc_cidr", "0.0.0.0/0"])
def test_instances_may_admit_the_lb_by_cidr(clients, seed, source):
    """The seed's step 2 opens 5000 to the public; a VPC-wide CIDR works as well."""
    instance_sg_without_lb(seed)
    cidr = seed.vpc_cidr if source == "vpc_cidr" else source
    seed.ec2.authorize_security_group_ingress(GroupId=seed.inst_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000, "IpRanges": [{"CidrIp": cidr}]}])
    assert codes(diagnose(clients, lb=seed.lb_name), ERROR) == set()


def test_all_traffic_rule_admits_the_lb(clients, seed):
    instance_sg_without_lb(seed)
    seed.ec2.authorize_security_group_ingress(GroupId=seed.inst_sg, IpPermissions=[{
        "IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": seed.lb_sg}]}])
    assert codes(diagnose(clients, lb=seed.lb_name), ERROR) == set()


def test_forward_config_with_weights_counts_as_forwarding(clients, seed):
    seed.elbv2.modify_listener(ListenerArn=seed.listener_arn, DefaultActions=[{
        "Type": "forward",
        "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": seed.tg_arn, "Weight": 1}]}}])
    assert codes(diagnose(clients, lb=seed.lb_name), ERROR) == set()


def test_rule_forwarding_every_path_counts_as_forwarding(clients, seed):
    """Default action fixed-response, but a rule sends /* to the group: the grader is served."""
    listener_fixed_response(seed)
    seed.elbv2.create_rule(ListenerArn=seed.listener_arn, Priority=10,
                           Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
                           Actions=[{"Type": "forward", "TargetGroupArn": seed.tg_arn}])
    assert codes(diagnose(clients, lb=seed.lb_name), ERROR) == set()


def test_rule_for_another_path_does_not_count(clients, seed):
    listener_fixed_response(seed)
    seed.elbv2.create_rule(ListenerArn=seed.listener_arn, Priority=10,
                           Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                           Actions=[{"Type": "forward", "TargetGroupArn": seed.tg_arn}])
    assert "LISTENER_NOT_FORWARDING" in codes(diagnose(clients, lb=seed.lb_name), ERROR)


# -- target health as AWS reports it (moto does not produce these reason codes) -----------

REASONS = [
    ("Target.Timeout", "unhealthy", "TARGET_TIMEOUT", ERROR),
    ("Target.ResponseCodeMismatch", "unhealthy", "HEALTH_CHECK_NOT_200", ERROR),
    ("Target.FailedHealthChecks", "unhealthy", "TARGET_FAILED_HEALTH_CHECKS", ERROR),
    ("Target.NotRegistered", "unused", "TARGET_NOT_REGISTERED", ERROR),
    ("Target.NotInUse", "unused", "TARGET_NOT_IN_USE", ERROR),
    ("Target.InvalidState", "unused", "TARGET_INVALID_STATE", ERROR),
    ("Target.IpUnusable", "unavailable", "TARGET_IP_UNUSABLE", ERROR),
    ("Target.HealthCheckDisabled", "unavailable", "TARGET_HEALTH_CHECK_DISABLED", WARNING),
    ("Target.DeregistrationInProgress", "draining", "TARGET_DRAINING", WARNING),
    ("Elb.RegistrationInProgress", "initial", "TARGET_REGISTRATION_IN_PROGRESS", WARNING),
    ("Elb.InitialHealthChecking", "initial", "TARGET_INITIAL_HEALTH_CHECKING", WARNING),
    ("Elb.InternalError", "unhealthy", "TARGET_ELB_INTERNAL_ERROR", ERROR),
    (None, "unhealthy", "TARGET_UNHEALTHY", ERROR),
]


@pytest.mark.parametrize(("reason", "state", "code", "severity"), REASONS,
                         ids=[r[0] or "no-reason" for r in REASONS])
def test_each_target_health_reason_is_translated(clients, seed, reason, state, code,
                                                 severity):
    inject_target_health(clients, aws_health(seed.instance_ids, state, reason,
                                             description="as AWS words it"))
    findings = diagnose(clients, lb=seed.lb_name)
    [finding] = [f for f in findings if f.code == code]
    assert finding.severity == severity
    for iid in seed.instance_ids:
        assert iid in finding.message
    if reason:
        assert reason in finding.message
    assert "as AWS words it" in finding.message
    assert finding.fix
    assert "TARGETS_HEALTHY" not in codes(findings)


def test_timeout_advice_is_the_faqs(clients, seed):
    inject_target_health(clients, aws_health(seed.instance_ids, "unhealthy", "Target.Timeout"))
    [finding] = [f for f in diagnose(clients, lb=seed.lb_name) if f.code == "TARGET_TIMEOUT"]
    assert "0.0.0.0" in finding.fix and "FAQ 1 and 4" in finding.fix


def test_response_code_mismatch_names_the_health_check_path(clients, seed):
    seed.elbv2.modify_target_group(TargetGroupArn=seed.tg_arn, HealthCheckPath="/healthz")
    inject_target_health(clients, aws_health(
        seed.instance_ids, "unhealthy", "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [404]"))
    [finding] = [f for f in diagnose(clients, lb=seed.lb_name)
                 if f.code == "HEALTH_CHECK_NOT_200"]
    assert "/healthz" in finding.message and "[404]" in finding.message
    assert "/health" in finding.fix
    [note] = [f for f in diagnose(clients, lb=seed.lb_name) if f.code == "HEALTH_CHECK_PATH"]
    assert note.severity == INFO and "/healthz" in note.message


def test_mixed_health_reports_each_reason_once(clients, seed):
    first, second = seed.instance_ids
    inject_target_health(clients, aws_health([first], "healthy")
                         + aws_health([second], "unhealthy", "Target.Timeout"))
    findings = diagnose(clients, lb=seed.lb_name)
    [timeout] = [f for f in findings if f.code == "TARGET_TIMEOUT"]
    assert second in timeout.message and first not in timeout.message
    assert "1 of 2" in next(f.message for f in findings if f.code == "TARGETS_HEALTHY")
