"""`python -m infra bench`: its options, and a step that is skipped rather than crashing."""

from __future__ import annotations

import pytest

from infra.bench.cli import Skip, _step
from infra.bench.report import BenchRun
from infra.cli import build_parser
from infra.errors import UserError


def test_defaults_and_options():
    args = build_parser().parse_args(["bench"])
    # -c16: the connections of the side-by-side figure (python -m app vs flask run)
    assert (args.duration, args.connections, args.threads, args.rounds) == (10, 16, 2, 3)
    assert args.slow_window == 15
    args = build_parser().parse_args(["bench", "--only", "badinput", "--only", "provision",
                                      "--duration", "3", "--no-docs"])
    assert args.only == ["badinput", "provision"] and args.duration == 3 and args.no_docs


@pytest.mark.parametrize("argv", [["bench", "--duration", "0"], ["bench", "--only", "nope"],
                                  ["bench", "--rounds", "x"]])
def test_bad_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def _bench() -> BenchRun:
    return BenchRun(date="d", command="c", machine={}, load_before="", load_settings=None,
                    generator="g")


def test_a_step_is_recorded_as_ok_skipped_or_failed(capsys):
    bench = _bench()
    _step(bench, "fine", lambda *_: None, lambda: None)

    def missing():
        raise Skip("wrk is not on PATH")

    def broken():
        raise UserError("port in use")

    _step(bench, "missing", lambda *_: None, missing)
    _step(bench, "broken", lambda *_: None, broken)
    assert [(s.name, s.status, s.note) for s in bench.sections] == [
        ("fine", "ok", ""), ("missing", "skipped", "wrk is not on PATH"),
        ("broken", "failed", "UserError: port in use")]
    assert not bench.complete
