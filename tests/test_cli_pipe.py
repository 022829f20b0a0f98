"""A reader that leaves early (`python -m infra policy | head -3`) is no error of ours: the
command stops quietly with 141, as a program killed by SIGPIPE, and never prints Python's
BrokenPipeError traceback. A broken pipe that is not standard output's stays a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import cli
from infra.aws import policy

ROOT = Path(__file__).resolve().parent.parent


def run_into_a_gone_reader(args: list[str]) -> tuple[int, str]:
    """The command with standard output a pipe whose reader has already gone: its first
    write fails, whatever its size (a reader that left after one byte raced a small output,
    which fits the pipe's 64 KiB buffer and can be written whole before the reader goes)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "infra", *args], cwd=ROOT,
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr.decode()


def test_policy_piped_into_a_reader_that_left_stops_quietly():
    code, err = run_into_a_gone_reader(["policy"])
    assert (code, err) == (141, "")


def test_a_broken_pipe_elsewhere_is_still_raised(monkeypatch):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")  # a socket's: stdout here is fine

    monkeypatch.setattr(policy, "run", broken)  # the parser is built in main(): it takes this
    with pytest.raises(BrokenPipeError):
        cli.main(["policy"])
