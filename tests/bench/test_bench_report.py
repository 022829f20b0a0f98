"""What docs/benchmarks.md and the plot are made of."""

from __future__ import annotations

from collections import Counter

import pytest

from infra.bench.badinput import BadInputResult
from infra.bench.failover import FailoverResult
from infra.bench.load import LoadSettings, SetupResult, ratio
from infra.bench.provision import ProvisionResult
from infra.bench.report import BenchRun, Section, console_summary, plot, render_markdown
from infra.bench.wrk import WrkResult


def wrk(rps: float, p50: float = 1.0, p99: float = 5.0, errors: int = 0) -> WrkResult:
    return WrkResult(requests=int(rps * 10), duration_s=10.0, requests_per_sec=rps,
                     p50_ms=p50, p99_ms=p99, socket_errors=0, non_2xx=errors)


def setups() -> dict[str, SetupResult]:
    return {
        "a": SetupResult("a", "flask run", "python -m flask --app app run",
                         [wrk(1000, 30), wrk(900, 31), wrk(1100, 29)], [90.0, 95.0, 97.0]),
        "b": SetupResult("b", "python -m app", "python -m app", [wrk(4000, 5), wrk(3600, 6)],
                         [99.0, 98.0]),
        "c": SetupResult("c", "testbed", skipped="the testbed is not running"),
        "d": SetupResult("d", "caddy", "caddy run", [wrk(20000, 0.5, 4.0, errors=3)], [99.0]),
    }


def bench_run(**overrides) -> BenchRun:
    run = BenchRun(date="2026-11-25 20:00 UTC", command="make bench",
                   machine={"CPU": "Test CPU", "Cores": "2"}, load_before="0.10 / 0.20 / 0.30",
                   load_settings=LoadSettings(), generator="wrk 4.1.0",
                   load_after="0.5 / 0.4 / 0.3",
                   total_s=123.0, setups=setups(),
                   sections=[Section("throughput"), Section("failover", "skipped", "no testbed")])
    for key, value in overrides.items():
        setattr(run, key, value)
    return run


def test_median_round_and_spread():
    a = setups()["a"]
    assert a.result.requests_per_sec == 1000
    assert a.spread == (900, 1100)
    # An even count takes the lower middle: a bad round cannot flatter the figure.
    assert setups()["b"].result.requests_per_sec == 3600


def test_ratios_use_the_median_rounds():
    s = setups()
    assert ratio(s, "b", "a") == pytest.approx(3.6)
    assert ratio(s, "c", "a") is None  # skipped, not zero
    assert ratio(s, "a", "d") == pytest.approx(0.05)


def test_markdown_has_the_machine_table_ratios_and_skips():
    text = render_markdown(bench_run())
    assert "| CPU | Test CPU |" in text
    assert "2026-11-25 20:00 UTC" in text
    assert "| (a) flask --app app run (werkzeug development server) | 1,000 | 900-1,100 | " \
           "30.00 | 5.00 | 0 | 90-97% |" in text
    assert "| (d) Caddy static_response (the ceiling) | 20,000 | 20,000-20,000 | 0.50 | " \
           "4.00 | 3 | 99-99% |" in text
    assert "skipped: the testbed is not running" in text
    assert "- b/a (requests/s): **3.60x**" in text
    assert "- c/a (requests/s): not measured" in text
    assert "| failover | skipped |" in text
    assert "![Throughput and latency per setup](benchmarks.png)" in text
    assert "```sh\nmake bench\n```" in text


def test_markdown_reports_failover_bad_input_and_provisioning():
    failover = FailoverResult(victim="i-1", requests=1000, request_rate=200.0,
                              failed_after_kill=300, failing_for_s=12.5, rejoin_s=7.0,
                              health_window_s=10.0, statuses={"200": 700, "502": 300},
                              failures_by_kind={"502": (297, 7.5), "503": (3, 12.5)})
    bad = BadInputResult(tried=400, from_corpus=120, generated=280, rejected=390, accepted=9,
                         server_errors=1, examples_5xx=["500: raw b'x'"])
    prov = ProvisionResult(deploy_s=2.0, destroy_s=1.0, instances=2,
                           deploy_calls=Counter({"ec2.RunInstances": 2, "ec2.CreateVpc": 1}),
                           destroy_calls=Counter({"ec2.DeleteVpc": 1}))
    text = render_markdown(bench_run(failover=failover, bad_input=bad, provisioning=prov))
    assert "| failed requests after killing `i-1` | 300 |" in text
    assert ("Requests sent to the dead instance (502) stopped 7.50 s after the kill (within "
            "the health check window: interval x unhealthy threshold = 10 s); the last failure "
            "of any kind was sent 12.50 s after it (OUTSIDE the health check window") in text
    assert "| 502 | 297 | 7.50 s |" in text
    assert "| 503 | 3 | 12.50 s |" in text
    assert "| **5xx answers** | **1** |" in text
    assert "- `500: raw b'x'`" in text
    assert "| deploy (2 instances) | 2.00 s | 3 |" in text
    assert "| ec2.RunInstances | 2 | 0 |" in text
    assert "| ec2.DeleteVpc | 0 | 1 |" in text
    summary = console_summary(bench_run(failover=failover, bad_input=bad, provisioning=prov))
    assert "300 failed requests over 12.50s" in summary
    assert "failover: SKIPPED - no testbed" in summary


def test_markdown_reports_slow_clients():
    from infra.bench.slowclients import SlowClientResult

    starved = SlowClientResult(200, 15.0, attempts=8, served=0,
                               failures={"timeout": 8}, served_after=20)
    fine = SlowClientResult(200, 15.0, attempts=400, served=399,
                            latencies_ms=[float(i) for i in range(1, 400)],
                            failures={"timeout": 1}, served_after=20)
    text = render_markdown(bench_run(slow_clients={"e": starved, "b": fine}))
    assert "for 15 s. Then the slow connections close" in text
    assert "| (e) gunicorn gthread | 0 of 8 | **0%** | - | - | timeout: 8 | 20 |" in text
    assert "| (b) python -m app | 399 of 400 | **100%** | 200.00 | 396.00 | timeout: 1 | 20 |" \
        in text
    summary = console_summary(bench_run(slow_clients={"b": fine}))
    assert "slow clients, (b) python -m app: 399/400 GETs served (100%)" in summary
    assert "- b/e (requests/s): not measured" in text  # no (e) in the throughput setups


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "b.png"
    plot(setups(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_a_busy_machine_is_said_so():
    busy = setups()
    for setup in busy.values():
        setup.idle_before = [3.0, 5.0, 0.0]
    assert "busy with other work" in render_markdown(bench_run(setups=busy))
    assert "The machine was quiet: CPU idle before the rounds was 98%" in render_markdown(
        bench_run())
