"""Parsing wrk's report: the numbers the bench's table is built from."""

from __future__ import annotations

import shutil

import pytest

from infra.bench.wrk import parse_wrk, run_wrk, to_ms, wrk_version

# A real `wrk -t2 -c32 -d3s --latency` report from this machine (Caddy static_response).
REPORT = """\
Running 3s test @ http://127.0.0.1:18391/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.45ms    2.03ms  20.24ms   86.62%
    Req/Sec    21.61k     3.82k   26.38k    81.67%
  Latency Distribution
     50%  691.00us
     75%    2.07ms
     90%    4.10ms
     99%    9.19ms
  129061 requests in 3.00s, 16.25MB read
Requests/sec:  42956.93
Transfer/sec:      5.41MB
"""

# A run that met errors: socket errors, non-2xx answers, latencies in seconds.
REPORT_WITH_ERRORS = """\
Running 10s test @ http://127.0.0.1:5000/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   150.20ms  300.00ms   2.00s    90.00%
    Req/Sec   120.00     30.00    200.00     70.00%
  Latency Distribution
     50%   80.50ms
     75%  120.00ms
     90%  400.00ms
     99%    1.50s
  2400 requests in 10.01s, 300.00KB read
  Socket errors: connect 3, read 2, write 0, timeout 7
  Non-2xx or 3xx responses: 41
Requests/sec:    239.76
Transfer/sec:     29.97KB
"""


def test_parses_a_clean_report():
    r = parse_wrk(REPORT)
    assert r.requests == 129061
    assert r.duration_s == pytest.approx(3.0)
    assert r.requests_per_sec == pytest.approx(42956.93)
    assert r.p50_ms == pytest.approx(0.691)  # microseconds are converted
    assert r.p99_ms == pytest.approx(9.19)
    assert (r.socket_errors, r.non_2xx, r.errors) == (0, 0, 0)


def test_counts_socket_errors_and_non_2xx_and_reads_seconds():
    r = parse_wrk(REPORT_WITH_ERRORS)
    assert r.socket_errors == 12
    assert r.non_2xx == 41
    assert r.errors == 53
    assert r.p50_ms == pytest.approx(80.5)
    assert r.p99_ms == pytest.approx(1500.0)
    assert r.duration_s == pytest.approx(10.01)


@pytest.mark.parametrize("line", ["     99%    9.19ms\n", "Requests/sec:  42956.93\n",
                                  "  129061 requests in 3.00s, 16.25MB read\n"])
def test_an_incomplete_report_is_an_error_not_a_zero(line):
    with pytest.raises(ValueError, match="not a complete"):
        parse_wrk(REPORT.replace(line, ""))


@pytest.mark.parametrize(("value", "unit", "ms"), [("250", "us", 0.25), ("1.5", "ms", 1.5),
                                                   ("2", "s", 2000.0), ("1", "m", 60000.0)])
def test_time_units(value, unit, ms):
    assert to_ms(value, unit) == pytest.approx(ms)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_run_wrk_against_a_real_server(fake_app):
    wrk = shutil.which("wrk")
    assert wrk_version(wrk) != "unknown"
    result = run_wrk(wrk, fake_app.base_url + "/", duration_s=1, connections=4, threads=1)
    assert result.requests > 0
    assert result.errors == 0
    fake_app.down = True
    failing = run_wrk(wrk, fake_app.base_url + "/", duration_s=1, connections=4, threads=1)
    assert failing.non_2xx == failing.requests > 0
