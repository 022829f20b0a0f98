"""The failover drill's counting: failed requests, time to recover, time to rejoin."""

from __future__ import annotations

import threading

import pytest

from infra.bench.failover import (
    FailoverSample,
    SteadyLoad,
    failures_by_kind,
    run_failover,
    summarize_recovery,
)


def test_summarize_recovery_counts_only_failures_after_the_kill():
    samples = [FailoverSample(9.0, False, None, 502),  # before the kill: not the drill's
               FailoverSample(10.1, True, "a", 200), FailoverSample(10.2, False, None, 502),
               FailoverSample(11.5, False, None, None), FailoverSample(12.0, True, "b", 200)]
    assert summarize_recovery(samples, killed_at=10.0) == (2, pytest.approx(1.5))


def test_the_window_ends_when_the_last_failing_request_was_sent():
    # Sent at 12.0, answered (slowly) at 13.0: the LB was still routing to the dead target
    # at 12.0, not at 13.0.
    samples = [FailoverSample(13.0, False, None, 502, sent=12.0),
               FailoverSample(12.5, True, "b", 200, 12.4)]
    assert summarize_recovery(samples, killed_at=10.0) == (1, pytest.approx(2.0))


def test_failures_by_kind():
    samples = [FailoverSample(9.0, False, None, 502, 9.0),  # before the kill
               FailoverSample(10.5, False, None, 502, 10.4),
               FailoverSample(11.0, False, None, 502, 10.9),
               FailoverSample(14.0, False, None, 503, 13.0),
               FailoverSample(12.0, False, None, None, 11.0),
               FailoverSample(12.0, True, "b", 200, 11.9)]
    kinds = failures_by_kind(samples, killed_at=10.0)
    assert kinds == {"502": (2, pytest.approx(0.9)), "503": (1, pytest.approx(3.0)),
                     "no answer": (1, pytest.approx(1.0))}


def test_no_failure_means_zero_time():
    assert summarize_recovery([FailoverSample(11.0, True, "a", 200)], killed_at=10.0) == (0, 0.0)


@pytest.mark.integration
def test_steady_load_records_every_answer(fake_app):
    with SteadyLoad(fake_app.base_url + "/", threads=2, pause_s=0.005) as load:
        threading.Event().wait(0.3)
        fake_app.down = True
        threading.Event().wait(0.3)
    samples = load.since(0)
    assert any(s.ok and s.served_by == "fake-1" for s in samples)
    assert any(not s.ok and s.status == 502 for s in samples)


@pytest.mark.integration
def test_drill_counts_failures_until_the_victim_is_routed_around(fake_app):
    """A fake LB: the victim answers until killed; 0.4 s later the LB stops sending to it."""
    victim = fake_app.served_by

    def kill():
        fake_app.down = True
        threading.Timer(0.4, lambda: setattr(fake_app, "down", False)).start()
        fake_app.served_by = "survivor"

    def restart():
        threading.Timer(0.3, lambda: setattr(fake_app, "served_by", victim)).start()

    result = run_failover(fake_app.base_url + "/", victim, kill, restart, health_window_s=10,
                          progress=lambda _m: None, quiet_s=0.5, max_wait_s=5)
    assert result.failed_after_kill > 0
    assert 0.2 < result.failing_for_s < 1.0
    assert result.rejoin_s is not None and 0.2 < result.rejoin_s < 1.5
    assert result.failed_after_restart == 0
    assert result.statuses["502"] == result.failed_after_kill
    assert result.failures_by_kind["502"][0] == result.failed_after_kill
    assert result.requests == sum(result.statuses.values())


@pytest.mark.integration
def test_a_victim_that_never_returns_is_reported(fake_app):
    victim = fake_app.served_by

    def kill():
        fake_app.served_by = "survivor"

    result = run_failover(fake_app.base_url + "/", victim, kill, lambda: None,
                          health_window_s=None, progress=lambda _m: None, quiet_s=0.3,
                          max_wait_s=0.6)
    assert result.failed_after_kill == 0
    assert result.rejoin_s is None
