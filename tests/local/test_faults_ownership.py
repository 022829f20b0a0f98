"""`local faults` owns what it starts: Ctrl-C at any moment leaves no process, no port and no
pid file; a second run with the same --stack is refused at once, naming the first one's pid;
`local down` with the same --stack stops a run, also one that was killed.

Real `python -m infra local faults` subprocesses and real signals. Every process the run
starts inherits a marker in its environment, so that one it never recorded is found too.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from hints_run import random_first_address
from ports import hold_consecutive
from signals import sigint_default

from infra.local.faults.ownership import run_root
from infra.local.processes import (
    PROJECT_ROOT,
    held_port,
    listened_by,
    same_process,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.long]

# Two slow faults on two lanes: the run is still at work 14 s in.
FAULTS = ("app-sg-closed", "app-crashed")
MARK = "SEEDLB_TEST_RUN"


class FaultsRun:
    """`python -m infra local faults` in a session of its own, as a terminal runs it; the
    pid files it writes are watched while it runs."""

    def __init__(self, stack: str, first: str, *faults: str):
        # The lanes' ports (--lb-port, +1), held until the run's Caddies take them.
        self.ports = hold_consecutive(len(FAULTS))
        self.stack, self.lb_port, self.first = stack, self.ports[0].getsockname()[1], first
        self.mark = uuid.uuid4().hex
        self.root = run_root(stack)
        argv = [sys.executable, "-m", "infra", "local", "faults", *(faults or FAULTS),
                "--stack", stack, "--lanes", "2", "--lb-port", str(self.lb_port),
                "--first-address", first]
        self.proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env={**os.environ, MARK: self.mark},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True,
                                     preexec_fn=sigint_default)
        self.seen: dict[int, dict] = {}  # pid -> its record, from every pid file ever seen
        self.output = ""
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while True:
            for path in self.root.glob("**/pids/*.json"):
                with contextlib.suppress(OSError, ValueError):
                    record = json.loads(path.read_text())
                    self.seen.setdefault(record["pid"], record)
            if self._done.wait(0.02):
                return

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 90) -> int:
        try:
            self.output, _ = self.proc.communicate(timeout=timeout)
        finally:
            self._done.set()
            self._watcher.join()
        return self.proc.returncode

    def marked(self) -> dict[int, str]:
        """{pid: command line} of the processes (not zombies) whose environment carries this
        run's marker."""
        found = {}
        needle = f"{MARK}={self.mark}".encode()
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if needle in environ.read_bytes().split(b"\0"):
                    stat = (environ.parent / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        found[int(environ.parent.name)] = \
                            repr((environ.parent / "cmdline").read_bytes()[:120])
            except OSError:
                continue
        return found

    def left_behind(self) -> list[str]:
        """Whatever the run left: processes, pid files, listening ports."""
        left = [f"running: {r['name']} (pid {pid})" for pid, r in self.seen.items()
                if same_process(pid, r.get("started", ""))]
        marked = self.marked()
        left += [f"unrecorded: {pid}: {command}" for pid, command in marked.items()]
        left += [f"pid file: {p}" for p in self.root.glob("**/pids/*.json")]
        ports = [("127.0.0.1", self.lb_port + i) for i in range(len(FAULTS))]
        base = [int(x) for x in self.first.split(".")]
        for lane in range(len(FAULTS)):
            for i in range(2):
                last = base[3] + 8 * lane + i
                ports.append((f"{base[0]}.{base[1]}.{base[2]}.{last}", 5000))
        for record in self.seen.values():
            if record["name"] == "moto":
                ports.append(("127.0.0.1", int(record["argv"][record["argv"].index("-p") + 1])))
        # Listened on by this run's processes: a port the run let go may at once be another
        # test's (seen in CI: moto's, stopped by the Ctrl-C).
        left += [f"listening: {h}:{p}" for h, p in ports
                 if listened_by(h, p, set(self.seen) | set(marked))]
        return left

    def kill(self) -> None:
        """A failed assertion: SIGKILL all of it, found by pid files and by the marker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid, record in self.seen.items():
            if same_process(pid, record.get("started", "")):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        for pid in self.marked():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)  # its logs, in the checkout's .local/
        for sock in self.ports:
            sock.close()


def new_run(*faults: str) -> FaultsRun:
    stack = f"fo{random.Random().randrange(16**4):04x}"
    return FaultsRun(stack, random_first_address(), *faults)


@pytest.mark.parametrize("seconds", [1, 2, 3, 6, 14])
def test_ctrl_c_at_any_moment_leaves_nothing(seconds):
    run = new_run()
    try:
        time.sleep(seconds)  # the moment of the Ctrl-C is what this test varies
        assert run.proc.poll() is None, "the run ended before the Ctrl-C"
        at = time.monotonic()
        run.ctrl_c()
        code = run.wait()
        took = time.monotonic() - at
        assert code == 130, run.output
        assert "Traceback" not in run.output, run.output
        left = run.left_behind()
        assert left == [], "\n".join(left) + "\n" + run.output[-3000:]
        print(f"Ctrl-C at {seconds} s: {len(run.seen)} processes recorded, all stopped "
              f"{took:.1f} s later")
    finally:
        run.kill()


def test_a_second_run_with_the_same_stack_is_refused_at_once_and_local_down_stops_the_first():
    first = new_run()
    try:
        assert wait_until(lambda: (first.root / "faults.json").exists(), 30, 0.05)
        with held_port() as other_port:  # other ports: the stack alone makes it the same run
            second = subprocess.run(
                [sys.executable, "-m", "infra", "local", "faults", "no-listener", "--stack",
                 first.stack, "--lb-port", str(other_port), "--first-address",
                 random_first_address()], cwd=PROJECT_ROOT, capture_output=True, text=True,
                timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"`local faults` for stack {first.stack} is already running (pid " \
               f"{first.proc.pid}); nothing was changed" in second.stderr
        assert f"make local-down STACK={first.stack}" in second.stderr
        # At once: it did nothing first (no step printed) and did not wait for the first run
        # to end. (Not a time bound: 0.4 s idle took 10.4 s once under make test's load.)
        assert second.stdout == "", second.stdout
        assert first.proc.poll() is None, "the refused run waited for or touched the first one"
        wait_until(lambda: any(r["name"] == "moto" for r in first.seen.values()), 30, 0.1)
        down = subprocess.run(
            [sys.executable, "-m", "infra", "local", "down", "--stack", first.stack],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"stopping `local faults` (pid {first.proc.pid})" in down.stdout
        assert first.wait() == 130
        left = first.left_behind()
        assert left == [], "\n".join(left) + "\n" + first.output[-3000:]
    finally:
        first.kill()


def test_local_down_stops_what_a_killed_run_left():
    run = new_run()
    try:
        assert wait_until(lambda: sum(r["name"].startswith("app-") for r in run.seen.values())
                          >= 2, 60, 0.1), run.output
        os.killpg(run.proc.pid, signal.SIGKILL)  # the run itself, not what it started
        run.wait()
        assert any(same_process(pid, r.get("started", "")) for pid, r in run.seen.items())
        down = subprocess.run(
            [sys.executable, "-m", "infra", "local", "down", "--stack", run.stack],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
        left = run.left_behind()
        assert left == [], "\n".join(left)
    finally:
        run.kill()
