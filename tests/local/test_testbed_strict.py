"""The running testbed is as strict as AWS: a rule changed by hand with plain boto3 shows in
DescribeTargetHealth (states and reasons) and in HTTP through the load balancer, within the
target group's health check window (5 s interval, 2 to fail, 2 to pass: not shortened)
plus the supervisor's poll and slack for a loaded machine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import requests

from infra.local.processes import PROJECT_ROOT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]
SLACK = 10.0


@pytest.fixture(scope="module")
def window(testbed) -> float:
    hc = testbed.read_stack().health
    assert (hc.interval, hc.healthy, hc.unhealthy) == (5, 2, 2)  # the real timing
    return hc.interval * max(hc.healthy, hc.unhealthy) + hc.timeout + 1 + SLACK


def health(testbed) -> dict[str, tuple[str, str | None]]:
    tg = testbed.read_stack().target_group_arn
    descs = testbed.clients().elbv2.describe_target_health(TargetGroupArn=tg)[
        "TargetHealthDescriptions"]
    return {d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
            for d in descs}


def states(testbed, wanted: dict[str, tuple[str, str | None]]) -> bool:
    return health(testbed) == wanted


def get(lb: str) -> int | str:
    try:
        return requests.get(f"http://{lb}/", timeout=3).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def served_by(lb: str, n: int) -> set[str | None]:
    return {requests.get(f"http://{lb}/", timeout=3).headers.get("X-Served-By")
            for _ in range(n)}


def all_of(testbed, state: str, reason: str | None) -> dict:
    return {iid: (state, reason) for iid in testbed.instances}


def groups(testbed) -> dict[str, dict]:
    ec2 = testbed.clients().ec2
    found = ec2.describe_security_groups(Filters=[
        {"Name": "tag:Stack", "Values": [testbed.stack]}])["SecurityGroups"]
    return {g["GroupName"].rsplit("-", 2)[-2]: g for g in found}  # "lb", "app"


def test_up_reports_real_health_and_json_status(testbed):
    assert wait_until(lambda: states(testbed, all_of(testbed, "healthy", None)), 20, 0.5)
    done = subprocess.run(
        [sys.executable, "-m", "infra", "local", "status", "--json", "--stack", testbed.stack,
         "--runtime-dir", str(testbed.runtime_dir)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60, check=True)
    status = json.loads(done.stdout)
    assert status["endpoint"] == testbed.endpoint_url
    assert status["load_balancer"] == testbed.lb_address
    assert status["last_sync"] and status["last_sync_age_s"] < 10
    assert {i["id"]: (i["address"], i["process"], i["health"]["state"])
            for i in status["instances"]} == {
        iid: (address, "running", "healthy") for iid, address in testbed.instances.items()}


def test_app_security_group_closed_then_reopened(testbed, window):
    ec2 = testbed.clients().ec2
    by_role = groups(testbed)
    rule = [{"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
             "UserIdGroupPairs": [{"GroupId": by_role["lb"]["GroupId"]}]}]
    ec2.revoke_security_group_ingress(GroupId=by_role["app"]["GroupId"], IpPermissions=rule)
    try:
        assert wait_until(lambda: states(testbed, all_of(testbed, "unhealthy", "Target.Timeout")),
                          window, 0.5), health(testbed)
        # Every target unhealthy: the ALB fails open and routes to them, and their packets
        # are dropped: no answer (the ALB's 504 comes after 10 s), never a 200.
        assert wait_until(lambda: testbed.status().fail_open, 5, 0.2)
        answers = {get(testbed.lb_address) for _ in range(3)}
        assert answers == {"ReadTimeout"}, answers
    finally:
        ec2.authorize_security_group_ingress(GroupId=by_role["app"]["GroupId"],
                                             IpPermissions=rule)
    assert wait_until(lambda: states(testbed, all_of(testbed, "healthy", None)), window, 0.5)
    assert wait_until(lambda: get(testbed.lb_address) == 200, window, 0.5)


def test_lb_security_group_without_port_80_gives_no_answer(testbed, window):
    ec2 = testbed.clients().ec2
    lb_sg = groups(testbed)["lb"]["GroupId"]
    rules = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
              "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
             {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
              "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    host, port = testbed.lb_address.rsplit(":", 1)

    def connect_times_out() -> bool:
        with socket.socket() as s:
            s.settimeout(1.0)
            try:
                s.connect((host, int(port)))
            except TimeoutError:
                return True
            except OSError:
                return False
        return False

    ec2.revoke_security_group_ingress(GroupId=lb_sg, IpPermissions=rules)
    try:
        # Dropped, as on AWS: the SYN gets no answer (a refusal would be another mistake).
        assert wait_until(connect_times_out, 10, 0.2)
        assert get(testbed.lb_address) == "ConnectTimeout"
        assert health(testbed) == all_of(testbed, "healthy", None)  # targets unaffected
    finally:
        ec2.authorize_security_group_ingress(GroupId=lb_sg, IpPermissions=rules)
    assert wait_until(lambda: get(testbed.lb_address) == 200, window, 0.5)


def test_one_app_killed_only_that_target_fails(testbed, window):
    victim, other = list(testbed.instances)
    testbed.kill_instance(victim)
    try:
        wanted = {victim: ("unhealthy", "Target.FailedHealthChecks"), other: ("healthy", None)}
        assert wait_until(lambda: states(testbed, wanted), window, 0.5), health(testbed)
        # Caddy's own checks run a second after the supervisor's (health.LEAD_SECONDS): then
        # only the other instance answers.
        assert wait_until(lambda: served_by(testbed.lb_address, 6) == {other}, 5, 0.2)
    finally:
        testbed.start_instance(victim)
    assert wait_until(lambda: states(testbed, all_of(testbed, "healthy", None)), window, 0.5)


def test_missing_health_check_path_is_a_code_mismatch_and_fails_open(testbed, window):
    elbv2 = testbed.clients().elbv2
    tg = testbed.read_stack().target_group_arn
    elbv2.modify_target_group(TargetGroupArn=tg, HealthCheckPath="/index.html")
    try:
        wanted = all_of(testbed, "unhealthy", "Target.ResponseCodeMismatch")
        assert wait_until(lambda: states(testbed, wanted), window, 0.5), health(testbed)
        # Every target unhealthy: an ALB routes to all of them, and the app answers GET /.
        assert wait_until(lambda: testbed.status().fail_open, 5, 0.2)
        assert {get(testbed.lb_address) for _ in range(4)} == {200}
    finally:
        elbv2.modify_target_group(TargetGroupArn=tg, HealthCheckPath="/health")
    assert wait_until(lambda: states(testbed, all_of(testbed, "healthy", None)), window, 0.5)


def test_listener_deleted_refuses_and_target_group_not_in_use(testbed, window):
    elbv2 = testbed.clients().elbv2
    view = testbed.read_stack()
    listener = next(ls for ls in elbv2.describe_listeners(LoadBalancerArn=view.lb_arn)[
        "Listeners"] if ls["Port"] == 80)
    elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
    try:
        assert wait_until(lambda: get(testbed.lb_address) == "ConnectionError", 10, 0.2)
        descs = elbv2.describe_target_health(TargetGroupArn=view.target_group_arn)[
            "TargetHealthDescriptions"]
        assert {(d["TargetHealth"]["State"], d["TargetHealth"]["Reason"]) for d in descs} == {
            ("unused", "Target.NotInUse")}
    finally:
        elbv2.create_listener(LoadBalancerArn=view.lb_arn, Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward",
                                               "TargetGroupArn": view.target_group_arn}])
    # Attached again: initial, then healthy after the healthy threshold, as on AWS.
    assert wait_until(lambda: states(testbed, all_of(testbed, "healthy", None)), window, 0.5)
    assert get(testbed.lb_address) == 200


def test_an_instance_in_a_private_subnet_never_starts_its_app(testbed, window):
    """Launched by hand into a subnet without an internet route, registered in place of
    app-2: its user data could not install the app, so the testbed starts none, says why,
    and the target fails its health checks (connection refused)."""
    from infra.local import faults

    drill = faults.FaultSite(testbed)
    fault = faults.FAULTS["private-subnet"]
    fault.apply(drill)
    try:
        private = drill.instance(faults.PRIVATE)["InstanceId"]
        wanted = {drill.ids["app-1"]: ("healthy", None),
                  private: ("unhealthy", "Target.FailedHealthChecks")}
        assert wait_until(lambda: states(testbed, wanted), window, 0.5), health(testbed)
        done = subprocess.run(
            [sys.executable, "-m", "infra", "local", "status", "--stack", testbed.stack,
             "--runtime-dir", str(testbed.runtime_dir)],
            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60, check=True)
        line = next(ln for ln in done.stdout.splitlines() if ln.strip().startswith(private + ":"))
        assert "app not started" in line and "no route to the internet" in line, done.stdout
        assert not any(r.name == f"app-{private}" for r in testbed.processes.records())
    finally:
        fault.undo(drill)
    assert wait_until(lambda: drill.recovered() is None, window, 0.5), drill.recovered()
    assert private not in testbed.instances  # terminated: it left the testbed
