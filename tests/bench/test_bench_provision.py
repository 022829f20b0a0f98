"""API calls counted with botocore's before-call hook."""

from __future__ import annotations

from moto import mock_aws

from infra.aws.clients import Clients, Target
from infra.aws.emulator import patched_environ
from infra.bench.provision import CallCounter


def test_counts_every_call_by_service_and_operation():
    with mock_aws():
        clients = Clients(Target("us-east-1", None))
        counter = CallCounter()
        counter.attach(clients.session)  # before any client exists, as the bench does
        clients.ec2.describe_vpcs()
        clients.ec2.describe_vpcs()
        clients.elbv2.describe_load_balancers()
        clients.client("sts").get_caller_identity()
        first = counter.take()
        clients.ec2.describe_subnets()
        second = counter.take()
    assert first == {"ec2.DescribeVpcs": 2, "elbv2.DescribeLoadBalancers": 1,
                     "sts.GetCallerIdentity": 1}
    assert second == {"ec2.DescribeSubnets": 1}


def test_waiter_polls_are_counted():
    with mock_aws():
        clients = Clients(Target("us-east-1", None))
        counter = CallCounter()
        counter.attach(clients.session)
        vpc = clients.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        clients.ec2.get_waiter("vpc_available").wait(VpcIds=[vpc])
    assert counter.calls["ec2.CreateVpc"] == 1
    assert counter.calls["ec2.DescribeVpcs"] >= 1


def test_patched_environ_restores(monkeypatch):
    monkeypatch.setenv("SEEDLB_BENCH_X", "old")
    monkeypatch.delenv("SEEDLB_BENCH_Y", raising=False)
    import os

    with patched_environ({"SEEDLB_BENCH_X": "new", "SEEDLB_BENCH_Y": "set"}):
        assert os.environ["SEEDLB_BENCH_X"] == "new"
    assert os.environ["SEEDLB_BENCH_X"] == "old"
    assert "SEEDLB_BENCH_Y" not in os.environ


def test_patched_environ_removes_and_restores(monkeypatch):
    import os

    monkeypatch.setenv("SEEDLB_BENCH_PROFILE", "mine")
    with patched_environ({}, remove=("SEEDLB_BENCH_PROFILE",)):
        assert "SEEDLB_BENCH_PROFILE" not in os.environ
    assert os.environ["SEEDLB_BENCH_PROFILE"] == "mine"
