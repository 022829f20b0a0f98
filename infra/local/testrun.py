"""`make test-local`: up, grade, failover drill, down, each timed, then a PASS/FAIL table.

Down always runs (also after a failure or Ctrl-C), so a second run needs no manual cleanup;
a second Ctrl-C during it hurries it, and it still stops every process it started. Only
when `up` refuses to start (a testbed of this stack already runs) does nothing run: the
running testbed is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests

from infra.console import Progress
from infra.local.drill import run_drill
from infra.local.interrupts import sigterm_as_interrupt
from infra.local.phases import phase_table, run_phase
from infra.local.runtime import StartRefused


@dataclass
class Phase:
    name: str
    passed: bool | None = None  # None: not run
    seconds: float = 0.0
    detail: str = ""


def smoke_check(lb: str, instances: dict[str, str]) -> tuple[bool, str]:
    """Used only when infra.grade is missing: GET and POST through the load balancer."""
    served, problems = set(), []
    for _ in range(2 * len(instances)):
        resp = requests.get(f"http://{lb}/", timeout=3)
        if resp.status_code != 200 or not resp.text.strip().lstrip("-").isdigit():
            problems.append(f"GET / -> {resp.status_code} {resp.text[:40]!r}")
        served.add(resp.headers.get("X-Served-By"))
    resp = requests.post(f"http://{lb}/", json={"num": 7}, timeout=3)
    if resp.status_code != 200:
        problems.append(f"POST / -> {resp.status_code}")
    if not set(instances) <= served:
        problems.append(f"only {sorted(s for s in served if s)} answered")
    return not problems, "; ".join(problems) or f"GET/POST fine, {len(served)} instances answered"


def grade_phase(testbed) -> tuple[bool, str]:
    try:
        from infra.grade.grader import grade
    except ImportError:
        return smoke_check(testbed.lb_address, testbed.instances)
    report = grade(testbed.lb_address, list(testbed.instances.values()), timeout=3.0)
    print(report.render(), flush=True)
    return report.passed, "infra.grade: " + ("PASS" if report.passed else "FAIL")


def down_phase(testbed, was_up: bool) -> tuple[bool, str]:
    report = testbed.down()  # also probes every address the testbed used
    leftovers = report["left"]
    still = report["listening"]  # those that still answer
    problems = []
    if was_up and not report["destroyed"]:
        problems.append("the stack was not destroyed in moto"
                        + (" (interrupted; moto is stopped, and its resources with it)"
                           if report["interrupted"] else ""))
    if leftovers:
        problems.append(f"processes left: {', '.join(leftovers)}; "
                        f"{testbed.commands.down()} stops them")
    if still:
        problems.append(f"still listening: {', '.join(still)}")
    detail = (f"stopped {len(report['stopped'])} processes, "
              f"{'stack destroyed, ' if report['destroyed'] else ''}ports closed")
    return not problems, "; ".join(problems) or detail


def render(phases: list[Phase], total: float) -> str:
    overall = all(p.passed for p in phases)
    return phase_table(phases, [f"{'PASS' if overall else 'FAIL'}  make test-local ({total:.1f}s)"])


def timed(progress: Progress, phase: Phase, step: Callable[[], tuple[bool, str]]) -> None:
    """One phase, timed (phases.run_phase). StartRefused goes on up untouched: nothing was
    started, so there is no phase to report and nothing to clean up."""
    run_phase(progress, phase, step, passthrough=(StartRefused,))


def run(make_testbed: Callable[..., object]) -> int:
    progress = Progress()
    testbed = make_testbed(progress)
    interrupts = testbed.interrupts
    phases = [Phase("1 up"), Phase("2 grade"), Phase("3 drill"), Phase("4 down")]

    def up() -> tuple[bool, str]:
        testbed.up()
        meta = testbed.meta
        return True, f"moto, {len(meta.instances)} app processes and Caddy on {meta.lb}"

    def drill() -> tuple[bool, str]:
        result = run_drill(testbed, progress)
        return result.passed, result.summary()

    interrupted = False
    # The handler stays for the clean-up too: a second Ctrl-C there must not skip it.
    with sigterm_as_interrupt(interrupts):
        try:
            timed(progress, phases[0], up)
            if phases[0].passed:
                timed(progress, phases[1], lambda: grade_phase(testbed))
                timed(progress, phases[2], drill)
        except KeyboardInterrupt:
            interrupted = True
            progress("interrupted: cleaning up")
        finally:
            if phases[0].passed is not None or interrupted:
                with interrupts.cleaning():
                    timed(progress, phases[3],
                          lambda: down_phase(testbed, bool(phases[0].passed)))
                interrupted = interrupted or interrupts.hurry.is_set()
        print(render(phases, progress.elapsed), flush=True)
    if interrupted:
        return 130
    return 0 if all(p.passed for p in phases) else 1
