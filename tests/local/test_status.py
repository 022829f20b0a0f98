"""`local status`: one document, whose text and JSON are two views of the same fields."""

from __future__ import annotations

from infra.local.status import InstanceStatus, ProcessStatus, TestbedStatus

# What `local status --json` has said since it exists: scripts and tests read these keys.
JSON_KEYS = {"stack", "mode", "endpoint", "endpoint_answers", "load_balancer",
             "load_balancer_listening", "front", "fail_open", "instances", "last_sync",
             "last_sync_age_s", "processes"}
INSTANCE_KEYS = {"id", "address", "process", "why", "answers_health", "health", "route"}


def document() -> TestbedStatus:
    timed_out = {"port": 5000, "state": "unhealthy", "reason": "Target.Timeout",
                 "description": "Request timed out"}
    return TestbedStatus(
        stack="st", mode="up", endpoint="http://127.0.0.1:4566", endpoint_answers=True,
        load_balancer="127.0.0.1:8080", load_balancer_listening=False, admin="127.0.0.1:2019",
        front={"state": "drop", "why": "no rule of the load balancer's groups admits it"},
        fail_open=True,
        instances=[
            InstanceStatus("i-1", "127.0.0.11:5000", "running", "", answers_health=True,
                           health=timed_out, caddy="unhealthy",
                           route={"why": "the app's security group drops port 5000"}),
            InstanceStatus("i-2", "127.0.0.12:5000", "not started", "its subnet has no route",
                           answers_health=False, health=None, route=None, caddy=None),
        ],
        last_sync=1_700_000_000.0, last_sync_age_s=1.25,
        processes=[ProcessStatus("moto", 41, True, "/r/logs/moto.log"),
                   ProcessStatus("caddy", 42, False, "/r/logs/caddy.log")])


def test_the_json_keeps_every_key_it_had():
    data = document().to_json()
    assert JSON_KEYS <= set(data)
    assert all(INSTANCE_KEYS <= set(i) for i in data["instances"])
    first, second = data["instances"]
    # `health` is moto's DescribeTargetHealth; `answers_health` is the app's own /health.
    assert first["health"]["reason"] == "Target.Timeout" and first["answers_health"] is True
    assert second["health"] is None and second["process"] == "not started"
    assert data["processes"][1] == {"name": "caddy", "pid": 42, "running": False,
                                    "log": "/r/logs/caddy.log"}


def test_the_text_shows_the_same_document():
    lines = document().render().splitlines()
    assert lines[0] == "stack st (up), control plane http://127.0.0.1:4566: answering"
    assert lines[1] == ("load balancer http://127.0.0.1:8080: NOT listening "
                        "(Caddy admin API 127.0.0.1:2019)")
    row = next(ln for ln in lines if ln.startswith("  i-1 "))
    assert row.split() == ["i-1", "127.0.0.11:5000", "running", "200", "unhealthy",
                           "(Target.Timeout)", "unhealthy"]
    row = next(ln for ln in lines if ln.startswith("  i-2 "))
    assert "not started" in row and "down" in row and row.endswith("not in rotation")
    assert "  i-2: app not started: its subnet has no route" in lines
    assert ("load balancer front: drop (fail-open: every target unhealthy, traffic to all): "
            "no rule of the load balancer's groups admits it") in lines
    assert "  i-1: the app's security group drops port 5000" in lines
    assert any(ln.startswith("  caddy ") and "GONE" in ln for ln in lines)
    assert "supervisor: last synced the proxy with the control plane 1.2s ago" in lines


def test_no_sync_yet_says_nothing_of_one():
    doc = document()
    doc.last_sync = doc.last_sync_age_s = None
    doc.front = None
    text = doc.render()
    assert "last synced" not in text and "load balancer front" not in text
