"""The hook that gives the testbed's moto server real target health (infra/local/motohook.py).

It reaches into moto's internals, so these tests pin it: to the moto version in
requirements.lock, to the internals it touches, and to what a real moto server process with
the hook answers over the API."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.aws.emulator import FAKE_CREDENTIALS, emulator_clients
from infra.errors import UserError
from infra.local import motohook, motoserver
from infra.local.processes import ProcessGroup

pytestmark = pytest.mark.integration
LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def test_the_hook_is_pinned_to_the_locked_moto():
    import moto

    # `moto==5.2.5` or, with extras and hashes, `moto[ec2,...]==5.2.5 \`
    locked = re.search(r"^moto(?:\[[^\]]*\])?==([^\s;\\]+)", LOCK.read_text(), re.M).group(1)
    assert motohook.PINNED_MOTO == locked == moto.__version__, (
        "moto moved: check infra/local/motohook.py against the new version's "
        "moto/elbv2/models.py, then update PINNED_MOTO")


def test_the_internals_it_touches_are_there():
    motohook.check_internals()  # raises MotoInternalsMoved, naming what moved


def test_it_fails_loudly_when_moto_moves(monkeypatch):
    import moto
    from moto.elbv2 import models

    monkeypatch.setattr(models.FakeTargetGroup, "health_for", lambda self, target: None)
    with pytest.raises(motohook.MotoInternalsMoved, match=r"health_for.*changed"):
        motohook.check_internals()
    monkeypatch.undo()
    monkeypatch.setattr(moto, "__version__", "99.0.0")
    with pytest.raises(motohook.MotoInternalsMoved, match="moto is 99.0.0"):
        motohook.check_internals()


@pytest.fixture(scope="module")
def moto_with_hook(tmp_path_factory):
    """A moto server process started the way the testbed starts it, reading `table`."""
    runtime = tmp_path_factory.mktemp("motohook")
    processes = ProcessGroup(runtime)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    endpoint = motoserver.start(processes, env)
    try:
        yield endpoint, motoserver.health_table(runtime)
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def stack(moto_with_hook):
    """A load balancer forwarding to a target group with two registered instances."""
    endpoint, table = moto_with_hook
    clients = emulator_clients(endpoint, "us-east-1")
    ec2, elbv2 = clients.ec2, clients.elbv2
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                 AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
               for i, z in enumerate("ab")]
    sg = ec2.create_security_group(GroupName="hook", Description="hook", VpcId=vpc)["GroupId"]
    lb = elbv2.create_load_balancer(Name="hook", Subnets=subnets, SecurityGroups=[sg])[
        "LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="hook", Protocol="HTTP", Port=5000, VpcId=vpc)[
        "TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                     DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])[
        "Listeners"][0]["ListenerArn"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=image, MinCount=2, MaxCount=2, SubnetId=subnets[0])["Instances"]]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 5000} for i in ids])
    return {"clients": clients, "tg": tg, "listener": listener, "ids": ids, "table": table,
            "vpc": vpc}


def health(stack, tg=None) -> dict[str, tuple]:
    descs = stack["clients"].elbv2.describe_target_health(TargetGroupArn=tg or stack["tg"])[
        "TargetHealthDescriptions"]
    return {d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"),
                                d["TargetHealth"].get("Description")) for d in descs}


def test_without_a_table_moto_answers_as_before(stack):
    stack["table"].unlink(missing_ok=True)
    assert {s for s, _, _ in health(stack).values()} == {"healthy"}


def test_the_table_is_what_describe_target_health_says(stack):
    first, second = stack["ids"]
    motohook.write_table(stack["table"], {stack["tg"]: {
        motohook.target_key(first, 5000): {"State": "unhealthy", "Reason": "Target.Timeout",
                                           "Description": "Request timed out"}}})
    found = health(stack)
    assert found[first] == ("unhealthy", "Target.Timeout", "Request timed out")
    # Registered but not yet checked: initial, as a newly registered target on AWS.
    assert found[second] == ("initial", "Elb.RegistrationInProgress",
                             "Target registration is in progress")
    # boto3's waiter reads the same answer: it does not see the group in service.
    waiter = stack["clients"].elbv2.get_waiter("target_in_service")
    with pytest.raises(Exception, match="Max attempts exceeded"):
        waiter.wait(TargetGroupArn=stack["tg"], WaiterConfig={"Delay": 0.1, "MaxAttempts": 2})


def test_moto_s_own_states_stand_and_unused_groups_are_not_in_use(stack):
    clients, (first, second) = stack["clients"], stack["ids"]
    motohook.write_table(stack["table"], {stack["tg"]: {
        motohook.target_key(i, 5000): {"State": "healthy"} for i in stack["ids"]}})
    clients.ec2.stop_instances(InstanceIds=[second])
    try:
        found = health(stack)
        assert found[first] == ("healthy", None, None)
        assert found[second][:2] == ("unused", "Target.InvalidState")  # the table says healthy
    finally:
        clients.ec2.start_instances(InstanceIds=[second])
    other = clients.elbv2.create_target_group(Name="other", Protocol="HTTP", Port=5000,
                                              VpcId=stack["vpc"])["TargetGroups"][0]
    clients.elbv2.register_targets(TargetGroupArn=other["TargetGroupArn"],
                                   Targets=[{"Id": first, "Port": 5000}])
    assert health(stack, other["TargetGroupArn"])[first][:2] == ("unused", "Target.NotInUse")
    # The listener moves to the other group: now the first one is not in use.
    clients.elbv2.modify_listener(ListenerArn=stack["listener"], DefaultActions=[
        {"Type": "forward", "TargetGroupArn": other["TargetGroupArn"]}])
    try:
        assert {r for _, r, _ in health(stack).values()} == {"Target.NotInUse"}
        assert health(stack, other["TargetGroupArn"])[first][0] == "healthy"  # moto's, no table
    finally:
        clients.elbv2.modify_listener(ListenerArn=stack["listener"], DefaultActions=[
            {"Type": "forward", "TargetGroupArn": stack["tg"]}])


def test_a_glob_reads_every_testbed_s_table(tmp_path):
    """One moto server shared by several testbeds (`local faults`) reads each one's table."""
    for name, arn in (("a", "arn:1"), ("b", "arn:2")):
        (tmp_path / name).mkdir()
        motohook.write_table(tmp_path / name / "t.json", {arn: {"i-1:5000": {"State": "x"}}})
    table = motohook._Table(str(tmp_path / "*" / "t.json"))
    assert set(table.groups()) == {"arn:1", "arn:2"}


def test_a_server_already_on_moto_s_port_is_not_taken_for_moto(tmp_path):
    """Another program's HTTP server (here one of the app's shape) on the chosen port: moto
    cannot bind it and exits; start says so, instead of handing out the stranger's address
    as the control plane (boto3 then parsed the app's JSON as AWS's XML)."""
    class Stranger(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stranger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    processes = ProcessGroup(tmp_path)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    try:
        with pytest.raises(UserError, match=r"(?s)exited with code .*Address already in use"):
            motoserver.start(processes, env, port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        processes.stop_all()
    assert processes.records() == []
