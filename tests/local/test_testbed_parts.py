"""The testbed's parts on their own: Caddy's config from a target group, the pid checks that
keep `down` from killing a stranger, and the argument checks."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import pytest

from infra.errors import UserError
from infra.local import proxy
from infra.local.mirror import HealthCheck, StackView, TargetView
from infra.local.processes import ProcessGroup, alive, is_ours
from infra.local.testbed import Testbed


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [("200", 200), ("200-299", 2), ("200,202", 2), ("200,301", 200), ("204", 204)],
)
def test_matcher_becomes_caddy_expect_status(matcher, expected):
    assert proxy.expect_status(matcher) == expected


def test_config_mirrors_the_target_group(tmp_path):
    health = HealthCheck("/health", interval=5, timeout=3, healthy=2, unhealthy=3,
                         matcher="200")
    config = proxy.build_config(lb_listen="127.0.0.1:1234", admin_listen="127.0.0.1:1235",
                                upstreams=["127.0.0.11:5000", "127.0.0.12:5000"],
                                health=health, runtime_dir=tmp_path)
    server = config["apps"]["http"]["servers"][proxy.SERVER]
    assert server["listen"] == ["127.0.0.1:1234"]
    assert server["automatic_https"] == {"disable": True}
    handler = server["routes"][0]["handle"][0]
    assert handler["health_checks"]["active"] == {
        "uri": "/health", "interval": "5s", "timeout": "3s", "passes": 2, "fails": 3,
        "expect_status": 200,
    }
    assert proxy.upstreams_of(config) == ["127.0.0.11:5000", "127.0.0.12:5000"]
    assert config["admin"] == {"listen": "127.0.0.1:1235", "config": {"persist": False}}
    # Everything Caddy writes stays in the runtime dir.
    assert config["storage"]["root"].startswith(str(tmp_path.resolve()))


def test_no_registered_targets_answers_503_like_an_alb(tmp_path):
    config = proxy.build_config(lb_listen="127.0.0.1:1", admin_listen="127.0.0.1:2",
                                upstreams=[], health=None, runtime_dir=tmp_path)
    handler = config["apps"]["http"]["servers"][proxy.SERVER]["routes"][0]["handle"][0]
    assert handler["handler"] == "static_response" and handler["status_code"] == 503


def test_only_in_service_targets_are_upstreams(tmp_path):
    bed = Testbed("unit", runtime_dir=tmp_path)
    health = HealthCheck("/health", 5, 3, 2, 2, "200")
    view = StackView("unit", ["i-1", "i-2", "i-3"], "arn:lb", "dns", 80, "arn:tg", 5000, health,
                     [TargetView("i-1", 5000, "healthy"), TargetView("i-2", 5000, "draining"),
                      TargetView("i-3", 5000, "unused"), TargetView("i-9", 5000, "healthy")])
    meta = replace(
        _meta(), instances={"i-1": "127.0.0.11:5000", "i-2": "127.0.0.12:5000",
                            "i-3": "127.0.0.13:5000"},
    )
    # i-2 drains, i-3 is unused, i-9 has no local process: only i-1 is in rotation.
    assert proxy.upstreams_of(bed.proxy_config(view, meta)) == ["127.0.0.11:5000"]


def _meta():
    from infra.local.runtime import Meta

    return Meta(stack="unit", mode="up", owner_pid=1, lb="127.0.0.1:1", admin="127.0.0.1:2")


def test_a_reused_pid_is_never_signalled(tmp_path):
    group = ProcessGroup(tmp_path)
    proc, record = group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert is_ours(record)
        # Same pid, another start time: as if the pid had been reused by a stranger.
        stranger = replace(record, started=record.started + "0")
        group._write(stranger)
        assert not is_ours(stranger)
        assert group.stop_all() == []  # not ours: left alone, its pid file dropped
        assert alive(proc.pid)
        assert group.records() == []
    finally:
        proc.kill()
        proc.wait()


def test_stop_takes_the_whole_process_group(tmp_path):
    group = ProcessGroup(tmp_path)
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print(c.pid, flush=True); time.sleep(30)")
    proc, record = group.start("parent", [sys.executable, "-c", code])
    log = tmp_path / "logs" / "parent.log"
    from infra.local.processes import wait_until

    assert wait_until(lambda: log.read_text().strip().splitlines()[-1].isdigit(), 10)
    child = int(log.read_text().strip().splitlines()[-1])
    assert alive(child)
    assert group.stop_all() == ["parent"]
    proc.wait(timeout=5)
    assert wait_until(lambda: not alive(child), 5)


@pytest.mark.parametrize("address", ["10.0.0.5", "0.0.0.0", "localhost", "::1"])
def test_instances_stay_on_loopback(address):
    with pytest.raises(UserError, match="loopback"):
        Testbed("unit", first_address=address)


def test_lb_port_is_checked():
    with pytest.raises(UserError, match="not a TCP port"):
        Testbed("unit", lb_port=70000)


def test_no_testbed_is_a_clear_error(tmp_path):
    bed = Testbed("unit", runtime_dir=tmp_path)
    with pytest.raises(UserError, match="no local testbed.*make local-up"):
        bed.status()
    with pytest.raises(UserError, match="no local testbed"):
        bed.kill_instance("i-1")



# --- what the supervisor asks of Caddy, from AWS's rules --------------------------------------
HEALTH = HealthCheck("/health", interval=5, timeout=3, healthy=2, unhealthy=2, matcher="200")


def _handler(config: dict) -> dict:
    return config["apps"]["http"]["servers"][proxy.SERVER]["routes"][0]["handle"][0]


def test_fail_open_drops_caddy_s_active_checks(tmp_path):
    options = {"lb_listen": "127.0.0.1:1", "admin_listen": "127.0.0.1:2",
               "upstreams": ["127.0.0.11:5000"], "health": HEALTH, "runtime_dir": tmp_path}
    assert "health_checks" in _handler(proxy.build_config(**options))
    handler = _handler(proxy.build_config(**options, fail_open=True))
    assert handler["handler"] == "reverse_proxy" and "health_checks" not in handler


def test_a_held_upstream_gets_the_alb_s_connect_timeout_as_a_504(tmp_path):
    handler = _handler(proxy.build_config(
        lb_listen="127.0.0.1:1", admin_listen="127.0.0.1:2", upstreams=["127.0.0.1:9"],
        health=HEALTH, runtime_dir=tmp_path, hold_timeout="10s"))
    assert handler["transport"] == {"protocol": "http", "response_header_timeout": "10s"}


@pytest.mark.parametrize(("response", "expected"), [
    ({"status": 418, "body": "teapot", "headers": {"Content-Type": "text/plain"}},
     {"handler": "static_response", "status_code": 418, "body": "teapot",
      "headers": {"Content-Type": ["text/plain"]}}),
    ({"abort": True}, {"handler": "static_response", "abort": True}),
])
def test_a_listener_that_does_not_forward(tmp_path, response, expected):
    assert _handler(proxy.build_config(
        lb_listen="127.0.0.1:1", admin_listen="127.0.0.1:2", upstreams=["127.0.0.11:5000"],
        health=HEALTH, runtime_dir=tmp_path, response=response)) == expected


def test_proxy_config_takes_the_supervisor_s_routing(tmp_path):
    bed = Testbed("unit", runtime_dir=tmp_path)
    view = StackView("unit", ["i-1"], "arn:lb", "dns", 80, "arn:tg", 5000, HEALTH,
                     [TargetView("i-1", 5000, "unhealthy")])
    meta = replace(_meta(), instances={"i-1": "127.0.0.11:5000"})
    assert proxy.upstreams_of(bed.proxy_config(view, meta)) == ["127.0.0.11:5000"]
    config = bed.proxy_config(view, meta, upstreams=["127.0.0.1:7"], lb_listen="127.0.0.1:9")
    assert proxy.upstreams_of(config) == ["127.0.0.1:7"]
    assert proxy.listen_of(config) == "127.0.0.1:9"


@pytest.mark.parametrize(("addresses", "expected"), [
    (["127.0.0.11:5000", "127.0.0.12:5000"], "127.0.0.13:5000"),
    (["127.0.0.1:5001", "127.0.0.1:5002"], "127.0.0.1:5003"),  # macOS: one port each
])
def test_an_instance_launched_later_gets_the_next_address(addresses, expected):
    from infra.local.lifecycle import next_address

    assert next_address(addresses) == expected


def test_first_boot_needs_an_internet_or_nat_route():
    import boto3
    from moto import mock_aws

    from infra.local import boot

    with mock_aws():
        ec2 = boto3.session.Session(region_name="us-east-1").client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)[
            "Instances"][0]["InstanceId"]
        # The VPC's main route table only routes inside the VPC: the user data cannot
        # download anything, so the app is never installed.
        problem = boot.boot_problems(ec2, [iid])[iid]
        assert subnet in problem and "never installed" in problem
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        nat = {"RouteTableId": table, "Routes": [
            {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1", "State": "active"}]}
        assert boot.internet_route(nat)  # outbound through a NAT gateway is enough
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        assert boot.boot_problems(ec2, [iid]) == {}


# --- the clients it passes in: nothing from the environment, nothing written to it ----------
def test_deploy_into_moto_needs_no_environment(tmp_path, monkeypatch):
    """The testbed hands the provisioning code clients that carry their endpoint, region and
    fake keys: a user's profile (even one that does not exist) and an AWS_ENDPOINT_URL of
    their own change nothing, and os.environ is never written (no swap, no lock)."""
    from infra.aws.emulator import FAKE_CREDENTIALS, emulator_clients
    from infra.aws.stack import Stack
    from infra.config import Settings
    from infra.local import motoserver
    from infra.local.mirror import read_stack
    from infra.local.runtime import child_env

    processes = ProcessGroup(tmp_path / "moto")  # its own process: this one's env is the test's
    moto = motoserver.start(processes, child_env(**FAKE_CREDENTIALS))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    writes: list[str] = []
    environ = type(os.environ)
    for method in ("__setitem__", "__delitem__"):
        original = getattr(environ, method)
        monkeypatch.setattr(environ, method, lambda self, key, *value, _o=original:
                            (writes.append(key), _o(self, key, *value))[1])
    try:
        clients = emulator_clients(moto, "us-east-1")
        stack = Stack(clients, Settings.fast(stack="envless", state_dir=str(tmp_path)))
        stack.deploy()
        view = read_stack(clients, "envless")
        assert len(view.instance_ids) == 2 and view.lb_arn
        stack.destroy()
    finally:
        monkeypatch.undo()  # then stop moto with the environment as it was
        processes.stop_all()
    assert writes == []
