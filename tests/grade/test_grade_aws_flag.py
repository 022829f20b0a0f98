"""`grade --aws`: on a 503 the report carries AWS's view of the targets (from the doctor),
found through the state file that names the local load balancer; without --aws, no AWS."""

from __future__ import annotations

import json

import boto3
import grade_servers as apps
import pytest
from moto import mock_aws

from infra.cli import main

REGION = "us-east-1"


@pytest.fixture
def moto_lb():
    """A load balancer whose target group has no targets: AWS's reason for a 503."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        elbv2 = boto3.client("elbv2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                              AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        sg = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
        lb = elbv2.create_load_balancer(Name="grade-aws", Subnets=subnets,
                                        SecurityGroups=[sg])["LoadBalancers"][0]
        tg = elbv2.create_target_group(Name="grade-aws-tg", Protocol="HTTP", Port=5000,
                                       VpcId=vpc, TargetType="instance")["TargetGroups"][0]
        elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward",
                                               "TargetGroupArn": tg["TargetGroupArn"]}])
        yield lb["DNSName"]


def _state(tmp_path, lb_dns, local_lb):
    state_dir = tmp_path / ".state"
    state_dir.mkdir()
    (state_dir / "seed-lb.json").write_text(json.dumps({
        "stack": "seed-lb", "region": REGION, "endpoint_url": None, "lb_dns": lb_dns,
        "instances": [], "grade_endpoints": {"lb": str(local_lb), "instances": []},
    }))
    return state_dir


def test_aws_flag_adds_target_health_on_503(moto_lb, serve, tmp_path, monkeypatch, capsys):
    # mock_aws intercepts in process, so the endpoint is "real AWS" to the loopback guard
    monkeypatch.delenv("SEEDLB_LOOPBACK_ONLY")
    local_lb = serve(apps.status_app(503))
    state_dir = _state(tmp_path, moto_lb, local_lb)
    code = main(["grade", str(local_lb), "--aws", "--json", "--timeout", "3",
                 "--state-dir", str(state_dir)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    check2 = report["checks"][1]
    assert check2["code"] == "http-503"
    aws_lines = [d for d in check2["details"] if d.startswith("AWS: ")]
    assert aws_lines, check2["details"]
    assert "no targets registered" in " ".join(aws_lines)


def test_without_aws_flag_aws_is_never_asked(serve, tmp_path, capsys):
    local_lb = serve(apps.status_app(503))
    state_dir = _state(tmp_path, "x.us-east-1.elb.amazonaws.com", local_lb)
    # no mock_aws here: any AWS call would fail; the loopback guard would also refuse it
    code = main(["grade", str(local_lb), "--json", "--timeout", "3",
                 "--state-dir", str(state_dir)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert not any("AWS" in d for d in report["checks"][1]["details"])
