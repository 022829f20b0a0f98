"""Fuzzing the grader: hypothesis makes up server behaviours (status lines, interim answers,
headers, bodies, encodings, timings) and the real `python -m infra grade` process grades a
raw loopback server that behaves so. Whatever it meets, the grader exits 0, 1 or 2 with no
traceback, prints valid JSON with --json and no control character without, and keeps its
run deadline.

SEEDLB_FUZZ_EXAMPLES sets the number of generated cases (default 12: the suite stays fast);
`pytest tests/grade/test_grade_fuzz.py --hypothesis-show-statistics` reports what ran.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_servers import ScriptedServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT, DEADLINE = 0.5, 2.5
STARTUP = 8.0  # python's start-up and imports, on a loaded 2-core box
EXAMPLES = int(os.environ.get("SEEDLB_FUZZ_EXAMPLES", "12"))

nasty_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                     max_size=30) | st.sampled_from(["\x1b]0;x\x07", "\x1b[2J", "\x00", "\u202e",
                                                     "\r\n", "\xff", "i-0", "i-1"])
status_lines = st.one_of(
    st.builds(lambda v, c, r: f"HTTP/1.{v} {c} {r}".encode("utf-8", "replace"),
              st.sampled_from([0, 1]), st.integers(100, 599), nasty_text),
    st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 200", b"HTTP/2 200", b"SSH-2.0-x",
                     b"\x16\x03\x01\x00\x05hello", b"", b"HTTP/1.1 2000 OK"]),
    st.binary(max_size=40),
)
bodies = st.one_of(
    st.integers(-10**12, 10**12).map(lambda n: str(n).encode()),
    st.integers(1, 6000).map(lambda n: b"9" * n),
    st.sampled_from([b'"100"', b"b'\"1000\"\\n'", "١٢٣".encode(), b"100\n", b"", b"<html>",
                     b'{"num": 1}', b"1.5", b"\x1b[2J100"]),
    st.binary(max_size=300),
    nasty_text.map(lambda t: t.encode("utf-8", "replace")),
)
headers = st.lists(st.tuples(st.sampled_from(["X-Served-By", "Content-Type", "Set-Cookie",
                                              "X-Any", "Connection", "Content-Encoding"]),
                             nasty_text), max_size=6)


@st.composite
def behaviours(draw) -> dict:
    return {
        "interim": draw(st.integers(0, 3) | st.just(40)),
        "status": draw(status_lines),
        "headers": draw(headers),
        "extra_headers": draw(st.integers(0, 3)) * 50,  # 0..150 more header lines
        "body": draw(bodies),
        "framing": draw(st.sampled_from(["length", "wrong-length", "close", "chunked",
                                         "bad-chunk"])),
        "gzip": draw(st.booleans()),
        "vary": draw(st.booleans()),  # a different number on each connection
        "pieces": draw(st.integers(1, 4)),
        "delay": draw(st.sampled_from([0.0, 0.0, 0.05, 0.2, 0.4])),
        "hold": draw(st.booleans()),  # keep the connection open after the answer
        "json": draw(st.booleans()),
    }


def render(b: dict, n: int) -> bytes:
    body = (str(n).encode() if b["vary"] else b["body"])
    head = [b"HTTP/1.1 100 Continue\r\n\r\n"] * b["interim"]
    lines = [b["status"]]
    lines += [f"{k}: {v}".encode("utf-8", "replace") for k, v in b["headers"]]
    lines += [f"X-Pad-{i}: {i}".encode() for i in range(b["extra_headers"])]
    if b["gzip"]:
        body = gzip.compress(body)
        lines.append(b"Content-Encoding: gzip")
    if b["framing"] == "length":
        lines.append(f"Content-Length: {len(body)}".encode())
    elif b["framing"] == "wrong-length":
        lines.append(f"Content-Length: {len(body) + 7}".encode())
    elif b["framing"] in ("chunked", "bad-chunk"):
        lines.append(b"Transfer-Encoding: chunked")
        size = f"{len(body):x}" if b["framing"] == "chunked" else "zz"
        body = (size.encode() + b"\r\n" + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    return b"".join(head) + b"\r\n".join(lines) + b"\r\n\r\n" + body


def script_of(b: dict):
    def script(n: int):
        data = render(b, n)
        step = max(1, len(data) // b["pieces"])
        return [(b["delay"], data[i:i + step]) for i in range(0, len(data), step)]
    return script


@pytest.mark.timeout(max(300, 10 * EXAMPLES))  # each case is a grader process: ~1-2 s
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(behaviour=behaviours())
def test_any_server_behaviour(behaviour):
    server = ScriptedServer(script_of(behaviour), hold=behaviour["hold"])
    try:
        args = [sys.executable, "-m", "infra", "grade", server.address,
                "--timeout", str(TIMEOUT), "--deadline", str(DEADLINE)]
        if behaviour["json"]:
            args.append("--json")
        started = time.monotonic()
        proc = subprocess.run(args, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              capture_output=True, text=True, errors="replace",
                              timeout=DEADLINE + STARTUP + 30)
        took = time.monotonic() - started
    finally:
        server.close()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr)
    assert took < DEADLINE + STARTUP, took
    if behaviour["json"]:
        report = json.loads(proc.stdout)
        assert report["seconds"] <= DEADLINE + 0.1, report["seconds"]
        assert isinstance(report["passed"], bool)
    else:
        bad = {repr(c) for c in proc.stdout + proc.stderr if not (c.isprintable() or c == "\n")}
        assert not bad, bad
        assert proc.stdout.strip().splitlines()[-1].startswith(("PASS", "FAIL"))
