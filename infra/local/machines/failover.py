"""The failover drill on booted instances: the app crashes, systemd brings it back.

On EC2 the boot script's unit has `Restart=always` (infra/aws/templates/user_data.sh), so a
crashed app comes back by itself. Here the drill crashes one instance's app the way a
crash happens, `systemctl kill -s KILL` on its unit inside the machine, under a steady
stream of requests through the load balancer, and checks:

- systemd restarted it: the unit's NRestarts went up by one and its MainPID changed, while
  the machine kept running (no new boot) and nothing of the testbed started anything;
- the app answered again within RestartSec and a start-up (`RESTART_WINDOW`);
- the other instance answered every request it got, throughout;
- the crashed instance served again through the load balancer, with its seed intact (the
  unit's SEED_FILE survives a restart);
- requests failed only while the app was down (an ALB routes to a target until its health
  checks fail, so some do: they are counted, not forbidden).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.console import quiet
from infra.local.machines import machine
from infra.local.processes import wait_until
from infra.local.stream import REQUEST_TIMEOUT, CrashOutcome, RequestStream, get_seed

RESTART_WINDOW = 20.0  # RestartSec=2, then the app's start on a loaded 2-core machine
WARMUP = 0.5
REJOIN_SECONDS = 15.0  # the app answering -> served through the load balancer again


@dataclass
class RestartResult(CrashOutcome):
    restarts_before: int = 0
    restarts_after: int = 0
    pid_before: str = ""
    pid_after: str = ""
    answered_after: float | None = None  # kill -> the app answers /health again
    rejoined_after: float | None = None  # kill -> served through the load balancer again
    failed_outside_outage: int = 0

    def summary(self) -> str:
        answered = f"{self.answered_after:.1f}s" if self.answered_after is not None else "never"
        rejoined = f"{self.rejoined_after:.1f}s" if self.rejoined_after is not None else "never"
        text = (f"systemctl kill -s KILL on {self.victim}: systemd restarted it (NRestarts "
                f"{self.restarts_before}->{self.restarts_after}, MainPID {self.pid_before}->"
                f"{self.pid_after}); answering after {answered}, back behind the load "
                f"balancer after {rejoined}; {self.requests} requests, {self.failed} failed "
                f"(all while it was down: {self.failed_outside_outage == 0}); seed "
                f"{'intact' if self.seed_intact else 'LOST'}")
        return text + "".join(f"\n  - {p}" for p in self.problems)


def _unit(testbed, instance_id: str) -> tuple[int, str]:
    """systemd's NRestarts and MainPID of the app's unit in the machine."""
    state = machine.unit_state(testbed.runtime_dir, instance_id)
    return int(state.get("NRestarts", "0") or 0), state.get("MainPID", "")




def run_restart_drill(testbed, progress: Callable[[str], None] | None = None,
                      rng: random.Random | None = None) -> RestartResult:
    say = progress or quiet
    result = RestartResult()
    prepared = result.prepare(testbed, rng)
    if prepared is None:
        return result
    address, seed = prepared
    result.restarts_before, result.pid_before = _unit(testbed, result.victim)
    init_before = machine.init_pid(testbed.runtime_dir, result.victim)
    stream = RequestStream(testbed.lb_address)
    stream.start()
    try:
        both = {result.victim, result.survivor}
        wait_until(lambda: both <= stream.served(), 5.0 + WARMUP)
        say(f"drill: systemctl kill -s KILL {machine.SERVICE} on {result.victim} under "
            "a stream of GETs; systemd's Restart=always must bring it back")
        killed_at = time.time()
        machine.kill_app(testbed.runtime_dir, result.victim)
        _await_restart(testbed, result, address, killed_at, say)
        _await_rejoin(stream, result, killed_at)
    finally:
        stream.stop()
    _judge(testbed, result, stream.samples, killed_at, seed, init_before)
    return result


def _await_restart(testbed, result: RestartResult, address: str, killed_at: float,
                   say: Callable[[str], None]) -> None:
    """systemd has started the unit again (NRestarts up, a new MainPID) and the app answers."""
    def restarted() -> bool:
        restarts, pid = _unit(testbed, result.victim)
        return (restarts > result.restarts_before and pid not in ("", "0", result.pid_before)
                and get_seed(address) is not None)

    if wait_until(restarted, RESTART_WINDOW, 0.2):
        result.answered_after = time.time() - killed_at
    result.restarts_after, result.pid_after = _unit(testbed, result.victim)
    say(f"drill: {result.victim}'s app answers again after "
        f"{result.answered_after or 0:.1f}s (NRestarts {result.restarts_after})")


def _await_rejoin(stream: RequestStream, result: RestartResult, killed_at: float) -> None:
    """The victim serves through the load balancer again; then a few more of its answers."""
    back = time.time()

    def first_answer():
        return next((s for s in stream.since(back) if s.served_by == result.victim and s.ok),
                    None)

    if wait_until(lambda: first_answer() is not None, REJOIN_SECONDS, 0.05):
        result.rejoined_after = first_answer().sent - killed_at
    time.sleep(0.5)  # a few more answers from it, for the seed check


def _judge(testbed, result: RestartResult, samples, killed_at: float, seed: int,
           init_before: int | None) -> None:
    answered_at = killed_at + (result.answered_after or RESTART_WINDOW)
    from_victim = result.count(samples, answered_at, seed)
    result.failed_outside_outage = len([s for s in samples if not s.ok and not (
        killed_at - REQUEST_TIMEOUT <= s.sent <= answered_at + 1.0)])
    if result.answered_after is None:
        result.problems.append(f"systemd did not bring {result.victim}'s app back within "
                               f"{RESTART_WINDOW:.0f}s")
    if result.restarts_after != result.restarts_before + 1:
        result.problems.append(f"NRestarts went {result.restarts_before} -> "
                               f"{result.restarts_after}, not up by one")
    if machine.init_pid(testbed.runtime_dir, result.victim) != init_before:
        result.problems.append("the machine booted again: the restart was not systemd's")
    result.note_seed(from_victim, seed, None if result.rejoined_after is not None else
                     f"{result.victim} served nothing through the load balancer after the "
                     "restart")
    result.note_survivor()
    if result.failed_outside_outage:
        result.problems.append(f"{result.failed_outside_outage} requests failed while both "
                               "apps were up")
    result.passed = not result.problems
