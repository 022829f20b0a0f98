"""`localstack up` stops the process it started when the start goes no further: LocalStack
not answering in time, or its warm-up failing or interrupted (Ctrl-C). A stand-in plays the
LocalStack process (its command line names localstack.runtime.main, as `down` checks)."""

from __future__ import annotations

import os
import sys

import pytest

from infra.aws import localstack
from infra.aws.localstack import LocalStack
from infra.errors import UserError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def stand_in(tmp_path) -> LocalStack:
    """`python -m localstack.runtime.main` that sleeps: Python itself, linked where the
    LocalStack venv's would be, runs a module of that name from the state directory (its
    working directory). Stopped at once, its command line may still read empty (seen: 2
    of 5 starts), so `up` stops it by the child's pid, not by `down`'s look at /proc."""
    venv, state = tmp_path / "venv", tmp_path / "state"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    package = state / "localstack" / "runtime"
    package.mkdir(parents=True)
    for init in (state / "localstack" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    (package / "main.py").write_text("import time\ntime.sleep(600)\n")
    return LocalStack(port=1, state=state, venv=venv)


def started_pid(stack: LocalStack) -> int:
    return int(stack.pid_file.read_text()) if stack.pid_file.exists() else 0


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def test_not_answering_in_time_stops_it(stand_in, monkeypatch):
    monkeypatch.setattr(localstack, "START_TIMEOUT", 1.0)
    pids = []
    monkeypatch.setattr(LocalStack, "healthy", lambda self: pids.append(started_pid(self)))
    with pytest.raises(UserError, match="did not start"):
        stand_in.up(progress=lambda _m: None)
    assert pids[0] and gone(pids[0]) and not stand_in.pid_file.exists()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, ConnectionError])
def test_a_warm_up_that_fails_or_is_interrupted_stops_it(stand_in, monkeypatch, failure):
    monkeypatch.setattr(LocalStack, "healthy", lambda self: True)
    pids = []

    def warm_up(self):
        pids.append(started_pid(self))
        raise failure()

    monkeypatch.setattr(LocalStack, "_warm_up", warm_up)
    with pytest.raises(failure):
        stand_in.up(progress=lambda _m: None)
    assert pids[0] and gone(pids[0]) and not stand_in.pid_file.exists()
