"""`python -m infra grade` as users run it: the project's real app (gunicorn) twice behind
Caddy, exit codes, --json, and instances taken from a state file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def grade_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "infra", "grade", *args, "--timeout", "3"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - started


@pytest.fixture
def real_lb(real_app, caddy):
    instances = [real_app("i-aaa"), real_app("i-bbb")]
    return caddy(instances), instances


def test_real_app_twice_behind_caddy_passes_quickly(real_lb):
    lb, instances = real_lb
    proc, took = grade_cli(f"http://{lb}/", "--instances", ",".join(map(str, instances)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "PASS"
    assert "removed 'http://'" in proc.stdout
    assert "i-aaa" in proc.stdout and "i-bbb" in proc.stdout
    # ~1 s idle; loose for make test's load (a 0.4 s command once took 10 s there), and
    # still far below one read timeout per instance plus the 30 s deadline
    assert took < 15, took


def test_json_output_and_state_file_instances(real_lb, tmp_path):
    lb, instances = real_lb
    state_dir = tmp_path / ".state"
    state_dir.mkdir()
    (state_dir / "seed-lb.json").write_text(json.dumps({
        "stack": "seed-lb", "lb_dns": "seed-lb-1.us-east-1.elb.amazonaws.com",
        "instances": [{"id": "i-aaa", "public_ip": "54.1.1.1"}],
        "grade_endpoints": {"lb": str(lb), "instances": [str(i) for i in instances]},
    }))
    proc, _ = grade_cli(str(lb), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"] is True
    assert report["instances"] == [str(i) for i in instances]
    assert report["instances_source"].endswith("seed-lb.json")
    assert [c["status"] for c in report["checks"]] == ["PASS"] * 6
    assert report["requests"] <= 60


def test_failure_exits_1_and_usage_error_exits_2(serve, tmp_path):
    import grade_servers as apps

    lb = serve(apps.jsonify_app("i-0"))
    proc, _ = grade_cli(str(lb), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("FAIL")
    assert "json-quoted" in proc.stdout
    proc, _ = grade_cli("ftp://nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
