"""A reader that leaves early (`python -m infra policy | head -3`) is no error of ours: the
command stops quietly with 141, as a program killed by SIGPIPE, and never prints Python's
BrokenPipeError traceback. A broken pipe that is not standard output's stays a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra import cli

ROOT = Path(__file__).resolve().parent.parent


def run_and_leave(args: list[str]) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "infra", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(1)  # it has started writing; the reader goes
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


def test_policy_piped_into_a_reader_that_leaves_stops_quietly():
    code, err = run_and_leave(["policy"])  # ~5.5k characters: more than the pipe takes at once
    assert (code, err) == (141, "")


def test_a_broken_pipe_elsewhere_is_still_raised(monkeypatch):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")  # a socket's: stdout here is fine

    parser = cli.build_parser()
    args = parser.parse_args(["policy"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(args, broken))
    with pytest.raises(BrokenPipeError):
        cli.main(["policy"])


class _Fixed:
    def __init__(self, args, func):
        self.args, self.args.func = args, func

    def parse_args(self, argv):
        return self.args
