"""What crosses between `local faults` and its lanes (infra/local/faults/lane.py): JSON lines
with a schema, checked on the way in; and the fault table as data, one class per fault.

No testbed here: the lanes' own round trips are tests/local/test_faults.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local import faults
from infra.local.faults.fault import Fault
from infra.local.faults.lane import SCHEMA, LaneMessage, LaneSpec
from infra.local.faults.roundtrip import RoundTrip
from infra.local.faults.scheduler import LaneReports, plan
from infra.local.faults.schema import SchemaError

TRIP = RoundTrip("no-listener", passed=True, effect_s=1.2, grade_broken="FAIL",
                 doctor_codes=["LISTENER_MISSING"], check_s=3.0, recovered_s=4.5,
                 grade_fixed="PASS", seconds=9.0)


def test_a_result_round_trips_through_its_line():
    sent = LaneMessage("st-f1", "result", up_seconds=5.5,
                       trips=[TRIP, RoundTrip("app-crashed", problems=["stopped: x"])])
    line = sent.to_line()
    assert "\n" not in line and json.loads(line)["schema"] == SCHEMA
    assert LaneMessage.from_line(line) == sent


@pytest.mark.parametrize("line", [
    "", "Traceback (most recent call last):", "[st-f1] up in 5.0s", "[1, 2]", '"text"',
    '{"error": "the old prefix format is plain output now"}', "RESULT {}"])
def test_what_is_not_a_message_is_plain_output(line):
    assert LaneMessage.from_line(line) is None


def _line(**fields) -> str:
    return json.dumps({"schema": SCHEMA, "lane": "st-f1", "kind": "progress", **fields})


@pytest.mark.parametrize(("line", "words"), [
    (_line(kind="done"), "kind 'done'"),
    (_line(colour="red"), "unknown fields colour"),
    (json.dumps({"schema": SCHEMA, "kind": "progress"}), "missing lane"),
    (_line(text=3), "text is 3, not str"),
    (_line(kind="result"), "without up_seconds"),
    (_line(kind="result", up_seconds="5"), "up_seconds is '5'"),
    (_line(kind="result", up_seconds=5, trips={}), "trips is not a list"),
    (_line(kind="result", up_seconds=5, trips=[{"fault": "x", "passed": "yes"}]),
     "passed is 'yes', not bool"),
    (_line(kind="result", up_seconds=5, trips=[{"passed": True}]), "missing fault"),
    (_line(kind="result", up_seconds=5, trips=[{"fault": "x", "doctor_codes": [1]}]),
     "doctor_codes is [1]"),
    (_line(kind="result", up_seconds=True), "up_seconds is True"),
    (json.dumps({"schema": "seed-lb/faults-lane/0", "lane": "x", "kind": "progress"}),
     "another schema"),
])
def test_a_line_that_claims_the_schema_and_breaks_it_is_refused(line, words):
    with pytest.raises(SchemaError, match=words.replace("[", r"\[").replace("]", r"\]")):
        LaneMessage.from_line(line)


def test_a_lane_spec_round_trips_through_its_argv():
    spec = LaneSpec(stack="st-f2", faults=["no-listener", "app-crashed"], lb_port=None,
                    first_address="127.1.2.19", runtime_dir="/tmp/x", endpoint="http://h:1")
    assert LaneSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SchemaError, match="lb_port"):
        LaneSpec.from_json(json.dumps({**json.loads(spec.to_json()), "lb_port": "80"}))


def test_the_run_hears_progress_results_errors_and_nonsense():
    heard: list[str] = []
    reports = LaneReports(heard.append)
    specs = plan(["no-listener", "app-crashed", "lb-sg-no-80", "health-check-path"],
                 stack="st", lanes_wanted=4, lb_port=None, base="127.1.2.11",
                 region="us-east-1", caddy=None, endpoint="http://127.0.0.1:1",
                 root=Path("/tmp/none"), state_dir=None)
    assert [s.stack for s in specs] == ["st-f1", "st-f2", "st-f3", "st-f4"]
    assert [s.first_address for s in specs] == ["127.1.2.11", "127.1.2.19", "127.1.2.27",
                                                "127.1.2.35"]
    by_fault = {s.faults[0]: s for s in specs}
    ok, failed, silent, confused = (by_fault[n] for n in (
        "no-listener", "app-crashed", "lb-sg-no-80", "health-check-path"))
    reports.heard(ok, LaneMessage(ok.stack, "progress", text="up in 5.0s").to_line())
    reports.heard(ok, "a warning the lane printed")
    reports.heard(ok, LaneMessage(ok.stack, "result", up_seconds=5.0, trips=[TRIP]).to_line())
    reports.heard(failed, LaneMessage(failed.stack, "error", text="no Caddy").to_line())
    reports.heard(confused, _line(lane=confused.stack, kind="finished"))
    reports.heard(confused, LaneMessage("st-f9", "progress", text="?").to_line())
    assert heard == [f"[{ok.stack}] up in 5.0s", "a warning the lane printed"]
    trips = reports.trips(specs)
    # In the table's order (FAULTS'), whichever lane ran them.
    assert [t.fault for t in trips] == ["lb-sg-no-80", "health-check-path", "no-listener",
                                        "app-crashed"]
    problems = {t.fault: t.problems for t in trips}
    assert trips[2] == TRIP
    assert problems["app-crashed"] == [f"{failed.stack}: no Caddy"]
    assert problems["lb-sg-no-80"] == ["the lane failed"]
    assert problems["health-check-path"][0].startswith(f"{confused.stack}: a lane's message "
                                                       "of kind 'finished'")
    assert reports.up_seconds() == {ok.stack: 5.0}


def test_each_fault_is_a_class_of_its_own():
    """The table as data: one small class per fault, its words as class attributes and its
    four methods its own (none inherited from another fault)."""
    classes = [type(f) for f in faults.FAULTS.values()]
    assert len(set(classes)) == len(classes)
    for name, fault in faults.FAULTS.items():
        cls = type(fault)
        assert isinstance(fault, Fault) and cls.__bases__ == (Fault,), cls
        assert fault.name == name
        for attr in ("name", "faq", "does", "code"):
            assert isinstance(cls.__dict__.get(attr), str) and cls.__dict__[attr], (cls, attr)
        for method in ("apply", "undo", "effect", "broken"):
            assert method in cls.__dict__, f"{cls.__name__} has no {method} of its own"
        assert fault.grade in ("PASS", "FAIL") and fault.seconds > 0
