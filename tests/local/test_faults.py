"""Fault drills (infra/local/faults/): the seed FAQ's mistakes made on real testbeds.

The round trip runs `local faults` itself: every fault on testbeds of their own, side by
side on one moto server; each must show its effect within the health check window, make
the grader FAIL (PASS where an ALB fails open), be named by the doctor, and grade PASS once
fixed."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local import faults
from infra.local.processes import PROJECT_ROOT

pytestmark = pytest.mark.long

NAMED_IN_THE_ISSUE = {"app-sg-closed", "lb-sg-no-80", "default-sg-on-lb", "tg-wrong-port",
                      "health-check-path", "internal-scheme", "no-listener", "instance-stopped",
                      "app-crashed", "private-subnet"}
DOCTOR = PROJECT_ROOT / "infra" / "doctor"


def local(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra", "local", *args], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)


def test_every_fault_of_the_seed_faq_is_there():
    assert NAMED_IN_THE_ISSUE <= set(faults.FAULTS)


@pytest.mark.parametrize("fault", list(faults.FAULTS.values()), ids=list(faults.FAULTS))
def test_each_fault_names_a_code_the_doctor_emits(fault):
    source = "\n".join(p.read_text() for p in DOCTOR.glob("*.py"))
    assert f'"{fault.code}"' in source, f"the doctor has no finding {fault.code}"
    assert re.search(r"FAQ \d|step \d", fault.faq), fault.faq


def test_break_list_shows_each_fault_with_its_faq_entry():
    done = local("break", "--list")
    assert done.returncode == 0, done.stderr
    for fault in faults.FAULTS.values():
        assert fault.name in done.stdout
        assert fault.faq.split(";")[0][:40] in done.stdout.replace("\n", " ").replace("  ", " ")
        assert fault.code in done.stdout


@pytest.mark.parametrize(("args", "words"), [
    (("break", "no-such-fault"), "no fault 'no-such-fault'"),
    (("break",), "name a fault"),
    (("fix", "app-sg-closed", "--stack", "no-testbed-here"), "no local testbed"),
])
def test_mistakes_are_one_clear_line(args, words):
    done = local(*args)
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr


def test_lanes_share_out_every_fault_once():
    names = list(faults.FAULTS)
    for count in (1, 3, 9, 40):
        plan = faults.lanes(names, count)
        assert sorted(n for lane in plan for n in lane) == sorted(names)
        assert len(plan) == min(count, len(names))
    # The longest alone: the lanes end together rather than one waiting for the others.
    plan = faults.lanes(names, len(names) - 1)
    loads = [sum(faults.FAULTS[n].seconds for n in lane) for lane in plan]
    assert max(loads) <= max(f.seconds for f in faults.FAULTS.values())


def test_docs_list_every_fault():
    text = (PROJECT_ROOT / "docs" / "testbed.md").read_text()
    for fault in faults.FAULTS.values():
        assert f"`{fault.name}`" in text and fault.code in text


# Booted faults boot machines for minutes: make test-faults and make test-boot run them.
PROCESS_FAULTS = [name for name, fault in faults.FAULTS.items() if not fault.booted]


@pytest.mark.integration
def test_every_fault_round_trips(tmp_path):
    """break -> effect -> grade FAIL (or PASS: fail-open) -> doctor names it -> fix -> PASS."""
    stack = f"ft{random.Random().randrange(16**4):04x}"
    lines: list[str] = []
    rows, info = faults.run_all(
        PROCESS_FAULTS, stack=stack, lanes_wanted=9, lb_port=None, first_address=None,
        region="us-east-1", caddy=None, say=lines.append, root=tmp_path / "runtime",
        state_dir=str(tmp_path / "state"))
    table = faults.render(rows, 0.0)
    assert [r.fault for r in rows] == PROCESS_FAULTS, table
    failed = [r for r in rows if not r.passed]
    assert not failed, table + "\n" + "\n".join(lines[-40:])
    for row in rows:
        fault = faults.FAULTS[row.fault]
        assert row.effect_s is not None and row.recovered_s is not None
        assert row.grade_broken == fault.grade and row.grade_fixed == "PASS"
        assert fault.code in row.doctor_codes
    assert len(info["up_seconds"]) == len(info["lanes"])
    # Nothing left behind: each lane destroyed its stack and stopped its processes.
    assert not list(Path(tmp_path / "state").glob("*.json"))
    assert not list((tmp_path / "runtime").glob("lanes/*/pids/*.json"))
