"""The running testbed behaves like the ALB it mirrors: round robin over the registered
targets, health-check failover and recovery, and it follows the control plane."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from botocore.config import Config

from infra.local import proxy
from infra.local.drill import HealthCheckClock, count_check_lines, run_drill
from infra.local.mirror import find_instance_ids
from infra.local.processes import listened_by, listening, wait_until
from infra.local.runtime import app_process_name

pytestmark = [pytest.mark.integration, pytest.mark.long]


def served_by(lb: str, n: int) -> list[str]:
    return [requests.get(f"http://{lb}/", timeout=3).headers.get("X-Served-By") for _ in range(n)]


def serves(lb: str, wanted: set[str]) -> bool:
    """For a wait: a connection that Caddy closes while it loads the supervisor's new config
    (seen once in CI, right after a re-registration) is "not yet", not a failure."""
    try:
        return set(served_by(lb, 4)) == wanted
    except requests.ConnectionError:
        return False


def settled(testbed, interval: float) -> bool:
    """Caddy's checks have run for a whole interval since it last loaded a config (the
    supervisor's push of the faster health check), and every target is healthy in moto and
    in Caddy: a drill started now measures a failover, not the reload."""
    loads = [e for e in proxy.read_events(testbed.runtime_dir) if e.get("name") == "started"]
    if not loads or time.time() - float(loads[-1]["ts"]) < interval:
        return False
    return all(i.health and i.health["state"] == "healthy" and i.caddy == "healthy"
               for i in testbed.status().instances)


def test_instances_are_the_control_planes(testbed):
    """One app process per instance that moto reports for the stack's tags, nothing else."""
    ids = find_instance_ids(testbed.clients().ec2, testbed.stack)
    assert len(ids) == 2
    assert sorted(testbed.instances) == sorted(ids)
    for address in testbed.instances.values():
        host, port = address.rsplit(":", 1)
        assert host.startswith(testbed.first_address.rsplit(".", 1)[0])
        assert listening(host, int(port))


def test_round_robin_reaches_both_instances(testbed):
    answers = served_by(testbed.lb_address, 10)
    counts = Counter(answers)
    assert set(counts) == set(testbed.instances)
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    # Round robin: no instance answers twice in a row.
    assert all(a != b for a, b in zip(answers, answers[1:], strict=False)), answers


def test_caddy_is_configured_from_the_target_group(testbed):
    view = testbed.read_stack()
    config = proxy.Caddy(testbed.meta.admin, testbed.runtime_dir).config()
    handler = config["apps"]["http"]["servers"][proxy.SERVER]["routes"][0]["handle"][0]
    active = handler["health_checks"]["active"]
    assert active["uri"] == view.health.path == "/health"
    assert active["interval"] == f"{view.health.interval}s"
    assert active["fails"] == view.health.unhealthy
    assert active["passes"] == view.health.healthy
    assert handler["load_balancing"]["selection_policy"]["policy"] == "round_robin"
    assert sorted(proxy.upstreams_of(config)) == sorted(testbed.instances.values())


def test_deregistered_target_leaves_the_rotation_and_comes_back(testbed):
    view = testbed.read_stack()
    elbv2 = testbed.clients().elbv2
    victim, other = view.instance_ids
    elbv2.deregister_targets(TargetGroupArn=view.target_group_arn, Targets=[{"Id": victim}])
    try:
        assert wait_until(lambda: serves(testbed.lb_address, {other}), 6.0, 0.2)
        assert set(served_by(testbed.lb_address, 10)) == {other}
    finally:
        elbv2.register_targets(
            TargetGroupArn=view.target_group_arn,
            Targets=[{"Id": victim, "Port": view.target_port}],
        )
    assert wait_until(lambda: serves(testbed.lb_address, {victim, other}), 6.0, 0.2)


def test_health_check_changes_in_the_target_group_reach_caddy(testbed):
    """A faster health check, set in moto as an operator would, makes the tests below quick.

    1 s is below AWS's minimum of 5 s: botocore would refuse it before sending, moto accepts it.
    """
    view = testbed.read_stack()
    fast = testbed.clients().session.client(
        "elbv2",
        endpoint_url=testbed.endpoint_url,
        config=Config(parameter_validation=False),
    )
    fast.modify_target_group(
        TargetGroupArn=view.target_group_arn,
        HealthCheckIntervalSeconds=1,
        HealthCheckTimeoutSeconds=1,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )
    caddy = proxy.Caddy(testbed.meta.admin, testbed.runtime_dir)

    def interval():
        config = caddy.config()
        if config is None:  # the admin API did not answer in time (a busy machine): ask again
            return None
        handler = config["apps"]["http"]["servers"][proxy.SERVER]["routes"][0]["handle"][0]
        return handler.get("health_checks", {}).get("active", {}).get("interval")

    assert wait_until(lambda: interval() == "1s", 6.0, 0.2)


def test_the_drill_knows_when_the_next_health_check_is_due(testbed):
    """The checks' phase as the drill reads it (Caddy's config load and failed checks) says
    when the app will see the next checks; its own access log shows when it did."""
    health = testbed.read_stack().health
    assert health.interval == 1  # set by the test above: a check every second
    log = testbed.processes.record(app_process_name(next(iter(testbed.instances)))).log
    clock = HealthCheckClock(testbed.runtime_dir, health.interval, health.path, app_log=None)
    for _ in range(3):
        due = clock.due_after(time.time() + 0.3)
        assert due is not None
        offset = Path(log).stat().st_size
        assert wait_until(lambda o=offset: count_check_lines(log, o, health.path) > 0, 3.0, 0.01)
        seen = time.time()
        # Within a few ms when quiet; a wrong phase would be off by up to half a second.
        assert abs(seen - due) < 0.15, f"a check came {seen - due:+.2f}s from the prediction"


def test_failover_and_recovery(testbed):
    """Crash one instance under load: Caddy marks it down within the health check window,
    the other keeps answering, and it comes back with its seed. The drill times both to the
    checks' phase, and counts them: an ALB needs `unhealthy` failed checks and `healthy`
    passing ones."""
    health = testbed.read_stack().health
    assert wait_until(lambda: settled(testbed, health.interval), 10.0, 0.2), \
        testbed.status().render()
    result = run_drill(testbed)
    assert result.passed, result.summary()
    assert result.detected_after is not None and result.detected_after <= result.window
    assert result.rejoined_after is not None
    assert result.failed_after_detection == 0
    assert result.seed_intact
    assert result.failed_checks == health.unhealthy, result.summary()
    assert result.passing_checks == health.healthy, result.summary()
    assert result.timed_by, "the drill did not see the health checks' phase"
    health = proxy.Caddy(testbed.meta.admin, testbed.runtime_dir).health(
        list(testbed.instances.values())
    )
    assert set(health.values()) == {"healthy"}


def test_kill_instance_takes_it_out_of_rotation(testbed):
    victim, other = list(testbed.instances)
    testbed.kill_instance(victim)
    try:
        # 2 failed checks at 1 s intervals, then only the other instance answers.
        assert wait_until(lambda: serves(testbed.lb_address, {other}), 6.0, 0.2)
        status = testbed.status()
        assert status.instance(victim).caddy == "unhealthy"
        assert not status.instance(victim).answers_health
        # moto reports the supervisor's health checks (infra/local/motohook.py): refused.
        assert wait_until(lambda: testbed.status().instance(victim).health["reason"]
                          == "Target.FailedHealthChecks", 6.0, 0.2)
    finally:
        testbed.start_instance(victim)
    assert wait_until(lambda: serves(testbed.lb_address, {victim, other}), 6.0, 0.2)


def test_teardown_leaves_no_process_and_no_port(testbed):
    meta = testbed.meta
    records = testbed.processes.records()
    addresses = [meta.lb, meta.admin, meta.endpoint.removeprefix("http://"),
                 *meta.instances.values()]
    assert len(records) == 5  # moto, caddy, supervisor, two apps
    report = testbed.down()
    assert report["destroyed"]
    assert sorted(report["stopped"]) == sorted(r.name for r in records)
    assert testbed.processes.records() == []
    for record in records:
        assert not (Path(f"/proc/{record.pid}").exists() and _is_process(record.pid))
    for address in addresses:  # by these processes (a freed port may be another's)
        host, port = address.rsplit(":", 1)
        assert not listened_by(host, int(port), {r.pid for r in records}), address
    assert not (testbed.state_dir / f"{testbed.stack}.json").exists()
    assert testbed.meta is None
    assert testbed.down()["stopped"] == []  # idempotent
    # The test session's environment is as it was: no endpoint left pointing at a dead moto.
    assert "AWS_ENDPOINT_URL" not in os.environ


def _is_process(pid: int) -> bool:
    from infra.local.processes import alive

    return alive(pid)
