"""One fault, end to end, on a running testbed: break it, wait for the effect, grade and run
the doctor side by side, fix it, wait until the stack has recovered, grade again.

The RoundTrip is what a row of `local faults`' table says, and what a lane sends back to the
run that started it (lane.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from infra.errors import UserError
from infra.local import supervisor
from infra.local.faults.catalog import FAULTS
from infra.local.faults.commands import DoctorRun
from infra.local.faults.fault import Fault
from infra.local.faults.site import FaultSite
from infra.local.processes import wait_until
from infra.local.runtime import MACHINES

SLACK = 10.0  # seconds on top of the health check window: a loaded 2-core machine
BOOT_SECONDS = 60.0  # a machine's boot, on top of that, where a fault boots machines


@dataclass
class RoundTrip:
    fault: str
    passed: bool = False
    effect_s: float | None = None  # break -> the effect in the control plane and data path
    grade_broken: str = ""
    doctor_codes: list[str] = field(default_factory=list)
    check_s: float | None = None  # grade and doctor while broken, side by side
    recovered_s: float | None = None  # fix -> recovered
    grade_fixed: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def effect_window(testbed) -> float:
    """How long a fault may take to show: the health check window, a poll, and slack."""
    hc = testbed.read_stack().health
    # A booted testbed's faults may boot machines first (infra/local/machines).
    boot = BOOT_SECONDS if getattr(testbed.meta, "backend", "") == MACHINES else 0.0
    if hc is None:
        return 20.0 + SLACK + boot
    return hc.interval * max(hc.healthy, hc.unhealthy) + hc.timeout + \
        supervisor.POLL_SECONDS + SLACK + boot


def grade_once(testbed) -> str:
    from infra.grade.grader import grade

    report = grade(testbed.lb_address, list(testbed.instances.values()), timeout=3.0)
    return "PASS" if report.passed else "FAIL"


def run_fault(testbed, fault: Fault, say: Callable[[str], None]) -> RoundTrip:
    """Break, wait for the effect, grade and doctor (side by side), fix, wait, grade."""
    trip = RoundTrip(fault.name)
    started = time.monotonic()
    site = FaultSite(testbed, say)
    window = effect_window(testbed)

    def waited(since: float, check: Callable[[], object]) -> float | None:
        """Seconds from `since` until `check` held, or None if it did not within the window."""
        def safe() -> bool:
            try:
                return bool(check())
            except (ClientError, UserError, KeyError, TypeError):
                return False  # a resource mid-change: look again
        return time.monotonic() - since if wait_until(safe, window, 0.5) else None

    say(f"{fault.name}: break: {fault.does}")
    broke_at = time.monotonic()
    fault.apply(site)
    trip.effect_s = waited(broke_at, lambda: fault.effect(site))
    if trip.effect_s is None:
        trip.problems.append(f"no effect within {window:.0f}s")
    else:
        say(f"{fault.name}: took effect after {trip.effect_s:.1f}s")
    _check_while_broken(testbed, fault, trip, say)
    fixed_at = time.monotonic()
    fault.undo(site)
    trip.recovered_s = waited(fixed_at, lambda: site.recovered() is None)
    if trip.recovered_s is None:
        trip.problems.append(f"not recovered within {window:.0f}s: {site.recovered()}")
    trip.grade_fixed = grade_once(testbed)
    if trip.grade_fixed != "PASS":
        trip.problems.append("graded FAIL after the fix")
    trip.passed = not trip.problems
    trip.seconds = time.monotonic() - started
    say(f"{fault.name}: {'PASS' if trip.passed else 'FAIL'} ({trip.seconds:.1f}s)")
    return trip


def _check_while_broken(testbed, fault: Fault, trip: RoundTrip,
                        say: Callable[[str], None]) -> None:
    """The grader and the doctor, side by side: the doctor a process of its own."""
    checked_at = time.monotonic()
    doctor = DoctorRun(testbed)
    trip.grade_broken = grade_once(testbed)
    graded_s = time.monotonic() - checked_at
    trip.doctor_codes = doctor.codes()
    trip.check_s = time.monotonic() - checked_at
    if trip.grade_broken != fault.grade:
        trip.problems.append(f"graded {trip.grade_broken} while broken, expected {fault.grade}")
    if fault.code not in trip.doctor_codes:
        trip.problems.append(f"the doctor did not name {fault.code} "
                             f"(it said {', '.join(trip.doctor_codes) or 'nothing'})")
    say(f"{fault.name}: grade {trip.grade_broken} ({graded_s:.1f}s), doctor "
        f"{', '.join(trip.doctor_codes)} ({trip.check_s:.1f}s); fix")


def render(trips: list[RoundTrip], total: float) -> str:
    """The table: one row per fault."""
    head = (f"{'fault':<18} {'result':<6} {'effect':>7} {'broken':<7} {'doctor names':<29} "
            f"{'fixed':>6} {'graded':<6} {'time':>6}")
    lines = ["", head, "-" * len(head)]
    for r in trips:
        effect = f"{r.effect_s:.1f}s" if r.effect_s is not None else "-"
        fixed = f"{r.recovered_s:.1f}s" if r.recovered_s is not None else "-"
        code = FAULTS[r.fault].code
        named = code if code in r.doctor_codes else "-"
        lines.append(f"{r.fault:<18} {'PASS' if r.passed else 'FAIL':<6} {effect:>7} "
                     f"{r.grade_broken or '-':<7} {named:<29} {fixed:>6} "
                     f"{r.grade_fixed or '-':<6} {r.seconds:5.1f}s")
        lines += [f"{'':<20}- {p}" for p in r.problems]
    passed = sum(r.passed for r in trips)
    lines += ["-" * len(head),
              f"{'PASS' if trips and passed == len(trips) else 'FAIL'}  {passed} of "
              f"{len(trips)} faults round-trip (make test-faults, {total:.1f}s)",
              "effect: break -> seen in DescribeTargetHealth and the data path; broken: the "
              "grade while broken; fixed: fix -> targets healthy again"]
    return "\n".join(lines)
