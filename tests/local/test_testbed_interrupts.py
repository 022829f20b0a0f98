"""Ctrl-C and `kill`, as often as a user sends them: the testbed still stops every process it
started, and `local test` leaves a testbed that `local up` left running alone.

Real commands in subprocesses, real signals; random loopback addresses and free ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from signals import sigint_default

from infra.local.processes import PROJECT_ROOT, alive, is_ours, listened_by, wait_until

pytestmark = pytest.mark.integration


class Command:
    """A `python -m infra local ...` subprocess whose output is read as it comes."""

    def __init__(self, argv, env, cwd):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=sigint_default)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> Command:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # a failed assertion: never leave it running
            self.proc.kill()
            self.proc.wait()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.out + self.err)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        assert wait_until(lambda: self.saw(text) or self.proc.poll() is not None, timeout, 0.02)
        assert self.saw(text), self.output()

    def hammer(self, sig: int, every: float = 0.03, timeout: float = 60.0) -> None:
        """Send `sig` again and again until the command exits, as an impatient user does."""
        def signalled_or_exited() -> bool:
            if self.proc.poll() is not None:
                return True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            return False

        wait_until(signalled_or_exited, timeout, every)

    def finish(self, timeout: float = 60.0) -> int:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode

    def output(self) -> str:
        return "".join(self.out) + "\n--- stderr ---\n" + "".join(self.err)


def local(bed, action: str, cwd: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    argv = [
        sys.executable, "-m", "infra", "local", action, "--stack", bed.stack,
        "--lb-port", str(bed.lb_port), "--first-address", bed.first_address,
        "--runtime-dir", str(bed.runtime_dir),
    ]  # fmt: skip
    return argv, env


def addresses(meta) -> list[str]:
    return [a for a in (meta.lb, meta.admin, meta.endpoint.removeprefix("http://"),
                        *meta.instances.values()) if a]


def assert_all_stopped(bed, pids, used) -> None:
    for pid in pids:
        assert wait_until(lambda pid=pid: not alive(pid), 5), f"pid {pid} still runs"
    for address in used:  # by these processes (a freed port may be another's)
        host, port = address.rsplit(":", 1)
        assert not listened_by(host, int(port), set(pids)), address
    assert bed.processes.records() == []
    assert bed.meta is None


def test_local_test_next_to_a_running_local_up_is_refused_and_touches_nothing(
    tmp_path, new_testbed
):
    bed = new_testbed()
    argv, env = local(bed, "up", tmp_path)
    up = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    before = {r.name: (r.pid, r.started) for r in bed.processes.records()}
    meta, meta_before = bed.meta, bed.meta_path.read_text()
    assert len(before) == 5 and all(is_ours(r) for r in bed.processes.records())

    argv, env = local(bed, "test", tmp_path)
    test = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert test.returncode != 0
    assert "Traceback" not in test.stderr
    message = test.stderr
    assert "still running" in message and "nothing was changed" in message, message
    assert "left running by `local up`" in message
    assert "phase 2" not in test.stdout and "destroying" not in test.stdout, test.stdout

    # The running testbed is as it was: the same processes, the same runtime file, serving.
    assert {r.name: (r.pid, r.started) for r in bed.processes.records()} == before
    assert bed.meta_path.read_text() == meta_before
    served = set()
    for _ in range(4):
        resp = requests.get(f"http://{bed.lb_address}/", timeout=3)
        assert resp.status_code == 200
        served.add(resp.headers.get("X-Served-By"))
    assert served == set(bed.instances)

    # The command it names stops it.
    hint = re.search(r"`(\.venv/bin/python -m infra local down[^`]*)`", message)
    assert hint, message
    down_argv = [sys.executable, *hint.group(1).split()[1:]]
    down = subprocess.run(down_argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_all_stopped(bed, [pid for pid, _ in before.values()], addresses(meta))


def test_ctrl_c_again_and_again_during_the_clean_up_of_local_test_stops_everything(
    tmp_path, new_testbed
):
    bed = new_testbed()
    argv, env = local(bed, "test", tmp_path)
    with Command(argv, env, tmp_path) as run:
        run.wait_for("phase 3 drill", timeout=120)
        records = bed.processes.records()
        meta = bed.meta
        assert len(records) == 5 and meta is not None

        # While it runs, it owns the stack: another `up` is refused, and names it.
        other = subprocess.run(local(bed, "up", tmp_path)[0], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60)
        assert other.returncode != 0
        assert f"owned by a running `local test` (pid {run.proc.pid})" in other.stderr
        assert {r.pid for r in bed.processes.records()} == {r.pid for r in records}

        run.proc.send_signal(signal.SIGINT)
        run.wait_for("destroying stack")  # the clean-up has begun: now again, and again
        run.hammer(signal.SIGINT)
        code = run.finish()
    assert code == 130, run.output()
    assert "Traceback" not in run.output()
    assert run.saw("interrupted"), run.output()
    assert run.saw("FAIL  make test-local"), run.output()  # the table, with what happened
    assert_all_stopped(bed, [r.pid for r in records], addresses(meta))


def test_kill_again_and_again_during_start_up_stops_everything(tmp_path, new_testbed):
    bed = new_testbed()
    argv, env = local(bed, "up", tmp_path)
    with Command(argv, env, tmp_path) as run:
        run.wait_for("provisioning stack", timeout=60)  # moto and the supervisor run
        run.hammer(signal.SIGTERM, every=0.02)
        code = run.finish()
    assert code == 130, run.output()
    assert "Traceback" not in run.output()
    # Every child it started, also one started while the signals came, is gone.
    assert bed.processes.records() == [], run.output()
    logs = list((bed.runtime_dir / "logs").glob("*.log"))
    assert logs, "it started nothing: the test proves nothing"
    for log in logs:
        assert not _running_with_log(log), log


def _running_with_log(log: Path) -> bool:
    """Some process still writes to this log: a child's output goes there, recorded or not."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) == str(log):
                    return True
        except OSError:
            continue
    return False


DRIVER = """
import subprocess, sys, time
from pathlib import Path
from infra.local.interrupts import Interrupts
from infra.local.processes import ProcessGroup, wait_until

interrupts = Interrupts()
group = ProcessGroup(Path(sys.argv[1]), interrupts)
# A child that ignores SIGTERM, as a hung server would: only SIGKILL stops it.
stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")
proc, record = group.start("stubborn", [sys.executable, "-c", stubborn])
assert wait_until(lambda: "ready" in Path(record.log).read_text().splitlines(), 30, 0.02)
print(proc.pid, flush=True)
with interrupts.cleaning():
    print("stopping", flush=True)
    stopped = group.stop_all(timeout=90)  # a long grace period that a signal must cut short
print("stopped", stopped, flush=True)
"""


def test_a_signal_during_clean_up_hurries_it_and_does_not_interrupt_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    with Command([sys.executable, "-c", DRIVER, str(tmp_path)], env, tmp_path) as run:
        run.wait_for("stopping", timeout=30)
        child = int(run.out[0])
        assert alive(child)  # SIGTERM did not stop it; the grace period runs
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(timeout=30)  # well inside the 90 s grace period
    assert code == 0, run.output()  # not interrupted: the clean-up ran to its end
    assert run.saw("stopped ['stubborn']"), run.output()
    assert run.saw("interrupted during clean-up: stopping every process"), run.output()
    assert wait_until(lambda: not alive(child), 5)


DEFERRED = """
import signal
from infra.local.interrupts import Interrupts

interrupts = Interrupts()
with interrupts.installed():
    try:
        with interrupts.deferred():
            signal.raise_signal(signal.SIGINT)  # its handler runs before this returns
            print("the deferred part ran to its end", flush=True)
        print("not reached", flush=True)
    except KeyboardInterrupt:
        print("then the interrupt", flush=True)
"""


def test_a_signal_while_a_child_is_started_and_recorded_waits_for_its_pid_file(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-c", DEFERRED], env=env, capture_output=True,
                          text=True, timeout=30, preexec_fn=sigint_default)
    assert done.stdout.splitlines() == ["the deferred part ran to its end",
                                        "then the interrupt"], done.stdout + done.stderr
