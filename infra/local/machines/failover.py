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
from dataclasses import dataclass, field

from infra.local.drill import REQUEST_TIMEOUT, RequestStream, _get_seed, _post_seed
from infra.local.machines import machine
from infra.local.processes import wait_until

RESTART_WINDOW = 20.0  # RestartSec=2, then the app's start on a loaded 2-core machine
WARMUP = 0.5


@dataclass
class RestartResult:
    passed: bool = False
    victim: str = ""
    survivor: str = ""
    restarts_before: int = 0
    restarts_after: int = 0
    pid_before: str = ""
    pid_after: str = ""
    answered_after: float | None = None  # kill -> the app answers /health again
    rejoined_after: float | None = None  # kill -> served through the load balancer again
    requests: int = 0
    failed: int = 0
    failed_outside_outage: int = 0
    survivor_failed: int = 0
    seed_intact: bool = False
    problems: list[str] = field(default_factory=list)

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


def _state(testbed, instance_id: str) -> dict:
    return machine.unit_state(testbed.runtime_dir, instance_id)


def run_restart_drill(testbed, progress=None, rng: random.Random | None = None) -> RestartResult:
    say = progress or (lambda _m: None)
    result = RestartResult()
    view = testbed.read_stack()
    instances = testbed.instances
    in_rotation = [t.id for t in view.in_service if t.id in instances]
    if len(in_rotation) < 2:
        result.problems.append(f"needs two registered instances, found {len(in_rotation)}")
        return result
    result.victim, result.survivor = in_rotation[0], in_rotation[1]
    address = instances[result.victim]
    seed = (rng or random.Random()).randint(10_000, 99_999)  # noqa: S311 - a test value
    if not _post_seed(address, seed) or _get_seed(address) != str(seed):
        result.problems.append(f"could not set the seed {seed} on {result.victim} directly")
        return result
    before = _state(testbed, result.victim)
    init_before = machine.init_pid(testbed.runtime_dir, result.victim)
    result.restarts_before = int(before.get("NRestarts", "0") or 0)
    result.pid_before = before.get("MainPID", "")
    stream = RequestStream(testbed.lb_address)
    stream.start()
    try:
        both = {result.victim, result.survivor}
        wait_until(lambda: both <= {s.served_by for s in stream.since(0) if s.ok}, 5.0 + WARMUP)
        say(f"drill: systemctl kill -s KILL {machine.SERVICE} on {result.victim} under "
            "a stream of GETs; systemd's Restart=always must bring it back")
        killed_at = time.time()
        machine.kill_app(testbed.runtime_dir, result.victim)

        def restarted() -> bool:
            state = _state(testbed, result.victim)
            return (int(state.get("NRestarts", "0") or 0) > result.restarts_before
                    and state.get("MainPID") not in ("", "0", result.pid_before)
                    and _get_seed(address) is not None)

        if wait_until(restarted, RESTART_WINDOW, 0.2):
            result.answered_after = time.time() - killed_at
        after = _state(testbed, result.victim)
        result.restarts_after = int(after.get("NRestarts", "0") or 0)
        result.pid_after = after.get("MainPID", "")
        say(f"drill: {result.victim}'s app answers again after "
            f"{result.answered_after or 0:.1f}s (NRestarts {result.restarts_after})")
        back = time.time()
        if wait_until(lambda: any(s.served_by == result.victim and s.ok
                                  for s in stream.since(back)), 15.0, 0.05):
            first = next(s for s in stream.since(back) if s.served_by == result.victim and s.ok)
            result.rejoined_after = first.sent - killed_at
        time.sleep(0.5)  # a few more answers from it
    finally:
        stream.stop()
    answered_at = killed_at + (result.answered_after or RESTART_WINDOW)
    samples = stream.samples
    result.requests = len(samples)
    failed = [s for s in samples if not s.ok]
    result.failed = len(failed)
    result.failed_outside_outage = len([s for s in failed if not (
        killed_at - REQUEST_TIMEOUT <= s.sent <= answered_at + 1.0)])
    result.survivor_failed = len([s for s in samples
                                  if s.served_by == result.survivor and not s.ok])
    from_victim = [s for s in samples if s.sent >= answered_at and s.served_by == result.victim]
    result.seed_intact = bool(from_victim) and all(s.body == str(seed) for s in from_victim)
    if result.answered_after is None:
        result.problems.append(f"systemd did not bring {result.victim}'s app back within "
                               f"{RESTART_WINDOW:.0f}s")
    if result.restarts_after != result.restarts_before + 1:
        result.problems.append(f"NRestarts went {result.restarts_before} -> "
                               f"{result.restarts_after}, not up by one")
    if machine.init_pid(testbed.runtime_dir, result.victim) != init_before:
        result.problems.append("the machine booted again: the restart was not systemd's")
    if result.rejoined_after is None:
        result.problems.append(f"{result.victim} served nothing through the load balancer "
                               "after the restart")
    elif not result.seed_intact:
        bodies = sorted({s.body for s in from_victim})
        result.problems.append(f"{result.victim} came back with seed {bodies}, not {seed}")
    if result.survivor_failed:
        result.problems.append(f"{result.survivor_failed} requests to the survivor failed")
    if result.failed_outside_outage:
        result.problems.append(f"{result.failed_outside_outage} requests failed while both "
                               "apps were up")
    result.passed = not result.problems
    return result
