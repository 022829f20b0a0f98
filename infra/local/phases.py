"""Timed phases, and their table: what `make test-local` (testrun.py) and `make test-boot`
(machines/testboot.py) both print.

A phase is anything with `name`, `passed` (None: not run), `seconds` and `detail`
(testrun.Phase); a step returns (passed, detail).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from infra.errors import UserError

Step = Callable[[], tuple[bool, str]]


def run_phase(progress: Callable[[str], None], phase, step: Step, *,
              passthrough: tuple[type[BaseException], ...] = ()) -> None:
    """Run one step as `phase`, timed: a UserError fails the phase with its line; Ctrl-C (or
    SIGTERM) fails it and goes on up; the `passthrough` exceptions go on up untouched."""
    progress(f"phase {phase.name}")
    started = time.monotonic()
    try:
        phase.passed, phase.detail = step()
    except passthrough:
        raise
    except UserError as exc:
        phase.passed, phase.detail = False, str(exc)
    except KeyboardInterrupt:
        phase.passed, phase.detail = False, "interrupted (Ctrl-C or SIGTERM)"
        raise
    finally:
        phase.seconds = time.monotonic() - started
    progress(f"phase {phase.name}: {'PASS' if phase.passed else 'FAIL'} "
             f"({phase.seconds:.1f}s)")


def phase_table(phases: list, closing: list[str]) -> str:
    """One line per phase (its detail's further lines under it), then the `closing` lines."""
    lines = ["", f"{'phase':<10} {'result':<7} {'time':>7}  detail", "-" * 78]
    for p in phases:
        result = {True: "PASS", False: "FAIL", None: "skip"}[p.passed]
        first, *rest = (p.detail or "-").splitlines()
        lines.append(f"{p.name:<10} {result:<7} {p.seconds:6.1f}s  {first}")
        lines += [f"{'':<27}{line}" for line in rest]
    return "\n".join([*lines, "-" * 78, *closing])
