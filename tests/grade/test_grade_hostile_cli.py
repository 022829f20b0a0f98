"""`python -m infra grade` against each hostile server of issue 13, with the default
timeout and deadline: it ends, exits 1, prints no traceback and no control character, and
--json is valid JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from raw_servers import drip, response

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ESC = "\x1b]0;pwned\x07\x1b[2J"


def five_thousand_digits(_n):
    return [(0, response(body=b"7" * 5000))]


def body_dripped(_n):
    head = response(body=b"12345")[:-5]
    return [(0, head), *drip(b"12345", 1.0)]


def status_line_dripped(_n):
    return drip(response(body=b"1"), 1.0)


def endless_100_continue(_n):
    while True:
        yield (0, b"HTTP/1.1 100 Continue\r\n\r\n")


def escape_codes(_n):
    return [(0, response(body=f"{ESC}\x00100".encode(), headers=[f"X-Served-By: i-{ESC}"]))]


HOSTILE = {
    "5000-digit body": (five_thousand_digits, {3: "number-too-long"}),
    "body dripped 1 byte/s": (body_dripped, {2: "slow-response"}),
    "status line dripped 1 byte/s": (status_line_dripped, {2: "slow-response"}),
    "endless 100 Continue": (endless_100_continue, {2: "too-many-interim"}),
    "escape codes in a header and the body": (escape_codes, {3: "not-integer"}),
}


def start_grade(address: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "infra", "grade", address, *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_server_ends_in_a_named_fail(scripted, case):
    script, expected = HOSTILE[case]
    server = scripted(script)
    started = time.monotonic()
    text_run, json_run = start_grade(server.address), start_grade(server.address, "--json")
    code, out, err = finish(text_run)
    json_code, json_out, json_err = finish(json_run)
    took = time.monotonic() - started
    assert took < 30, took
    assert (code, json_code) == (1, 1), out + err
    assert "Traceback" not in err + json_err
    bad = sorted({repr(ch) for ch in out + err if not (ch.isprintable() or ch == "\n")})
    assert not bad, f"control characters in the text report: {bad}"
    assert out.strip().splitlines()[-1].startswith("FAIL")
    report = json.loads(json_out)
    assert report["passed"] is False
    got = {c["number"]: c["code"] for c in report["checks"] if c["status"] == "FAIL"}
    assert got.items() >= expected.items(), got
    assert report["seconds"] <= report["deadline"]


def test_exit_codes_pass_fail_usage(serve, tmp_path):
    import grade_servers as apps

    lb = serve(apps.correct("i-0"))
    code, out, _ = finish(start_grade(str(lb), "--timeout", "3"))
    assert code == 1 and "single-instance" in out  # one instance: FAIL
    for bad in (["--deadline", "0"], ["--timeout", "-1"], ["--deadline", "soon"]):
        code, _, err = finish(start_grade(str(lb), *bad))
        assert code == 2 and "Traceback" not in err, (bad, err)
    code, _, err = finish(start_grade("user:secret@lb.example.com"))
    assert code == 2 and "secret" not in err and "user:" not in err
