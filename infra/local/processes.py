"""Child processes of the local testbed: started in their own process group, recorded in pid
files, and stopped again, also by a later command after the starting one was killed.

A pid file records the pid, the process's start time and its command line. Before signalling
a recorded pid we check that it still is that process: pids are reused, and `down` must never
kill a stranger.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.errors import UserError
from infra.local.interrupts import Interrupts

# Where `python -m app` and `python -m infra` resolve: the checkout this module belongs to.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # e.g. "moto", "caddy", "app-i-0123", "supervisor"
    pid: int
    started: str  # an opaque start-time token (see start_token); "" if unknown
    argv: list[str]
    log: str

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid})"


def start_token(pid: int) -> str:
    """The kernel's start time of `pid` ("" if unknown): it changes when a pid is reused, so
    with the pid it names one process."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            # Fields after the command name (which may hold spaces) are fixed; 22nd: starttime.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return fields[19]
        return ""
    # macOS and other systems without /proc: ps gives the start time.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip()
    return ""


def same_process(pid: int, token: str) -> bool:
    """True if `pid` is alive and, when `token` is known, still the process it was taken from."""
    return alive(pid) and (not token or start_token(pid) == token)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def is_ours(record: ProcessRecord) -> bool:
    """True if the recorded pid is alive and still the process we started."""
    return same_process(record.pid, record.started)


class ProcessGroup:
    """The testbed's processes, one pid file each under `<runtime>/pids/`.

    `interrupts`: the running command's (infra/local/interrupts.py), so that a signal never
    splits a start from its pid file and hurries a stop; without one, Python's own Ctrl-C.
    """

    def __init__(self, runtime_dir: Path, interrupts: Interrupts | None = None):
        self.runtime_dir = Path(runtime_dir)
        self.interrupts = interrupts or Interrupts()
        self.pid_dir = self.runtime_dir / "pids"
        self.log_dir = self.runtime_dir / "logs"

    # --- starting -----------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> tuple[subprocess.Popen, ProcessRecord]:
        """Start `argv` in a new session (its own process group), output into logs/<name>.log.

        A new session keeps Ctrl-C in the terminal from reaching the child directly: the
        testbed stops its children itself, in order, in its cleanup.
        """
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with self.interrupts.deferred(), open(log, "ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd or PROJECT_ROOT,
            )
            record = ProcessRecord(name, proc.pid, start_token(proc.pid), list(argv), str(log))
            self._write(record)
        return proc, record

    def _write(self, record: ProcessRecord) -> None:
        path = self.pid_dir / f"{record.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(path)

    # --- reading ------------------------------------------------------------------------
    def records(self) -> list[ProcessRecord]:
        if not self.pid_dir.is_dir():
            return []
        found = []
        for path in sorted(self.pid_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                found.append(ProcessRecord(**json.loads(path.read_text())))
        return found

    def record(self, name: str) -> ProcessRecord | None:
        return next((r for r in self.records() if r.name == name), None)

    # --- stopping -----------------------------------------------------------------------
    def stop(self, name: str, timeout: float = 3.0) -> bool:
        """Stop one recorded process (and its group); True if something was running."""
        return bool(self.stop_many([name], timeout))

    def signal_many(self, names: list[str]) -> list[ProcessRecord]:
        """Ask the named processes to stop, without waiting; returns those that were running."""
        running = []
        for name in names:
            record = self.record(name)
            if record is None:
                continue
            if is_ours(record):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    # The leader only: it stops its own children (the group gets SIGKILL later).
                    os.kill(record.pid, stop_signal(name))
                running.append(record)
            else:
                self._forget(name)
        return running

    def wait_stopped(self, records: list[ProcessRecord], timeout: float = 3.0) -> list[str]:
        """Wait for signalled processes to go; SIGKILL whatever lingers, at once when asked to
        hurry (the interrupts' `hurry`). Returns the names of those that went; a process that is
        still there keeps its pid file, so that a later `down` finds it."""
        hurry = self.interrupts.hurry
        wait_until(lambda: hurry.is_set() or not any(alive(r.pid) for r in records), timeout)
        for record in records:
            # Also the stragglers of its group (gunicorn workers) when the leader is gone.
            _signal_group(record.pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(r.pid) for r in records), 2.0)
        stopped = []
        for record in records:
            if not is_ours(record):
                self._forget(record.name)
                stopped.append(record.name)
        return stopped

    def stop_many(self, names: list[str], timeout: float = 3.0) -> list[str]:
        """Stop the named processes in parallel; returns those that were running."""
        return self.wait_stopped(self.signal_many(names), timeout)

    def stop_all(self, timeout: float = 3.0) -> list[str]:
        return self.stop_many([r.name for r in self.records()], timeout)

    def _forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.pid_dir / f"{name}.json").unlink()


def stop_signal(name: str) -> int:
    # gunicorn: SIGQUIT to the master is its quick shutdown (SIGTERM waits for keep-alive
    # connections to close); the master then stops its workers.
    if name.startswith("app-"):
        return signal.SIGQUIT
    # moto's state is in memory and thrown away anyway; its SIGTERM handler takes a second.
    if name == "moto":
        return signal.SIGKILL
    return signal.SIGTERM


def _signal_group(pid: int, sig: int) -> None:
    # Each child leads its own session, so its pgid is its pid; the group takes its workers too.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll a local condition (a port, a file, a pid) until true or `timeout` seconds pass.

    For local processes only; AWS waits use boto3 waiters.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- ports -----------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port free now. Another program can take it before it is used: prefer held_port."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# A bound socket that does not listen keeps a port from everyone else's port-0 bind and
# connect() (Linux skips ports with an explicit bind in both), yet any server that sets
# SO_REUSEADDR (Caddy, werkzeug, granian, gunicorn, http.server) can still bind and listen
# there. Without it, a port freed for a server may be an outgoing connection's local port
# a moment later, and the server's bind fails. BSD and macOS only share a port between
# sockets that both set SO_REUSEPORT, so elsewhere the port is only picked, not held.
HOLDS_PORTS = sys.platform.startswith("linux")


def bound_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEADDR (and SO_REUSEPORT if asked), not
    listening. Raises OSError, with nothing left open, if the port is taken."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def hold_port(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A socket holding host:port (a free port if 0) until it is closed. Raises OSError if
    the port is taken, by a listener or an outgoing connection."""
    return bound_socket(host, port, reuse_port=True)


@contextlib.contextmanager
def held_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A free port on `host`, held (see HOLDS_PORTS) until the block ends: start the server
    that binds it inside the block."""
    if not HOLDS_PORTS:
        yield free_port(host)
        return
    with hold_port(host) as sock:
        yield sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on host:port (or the address cannot be bound for that reason)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listening(host: str, port: int, timeout: float = 0.2) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def address_bindable(host: str) -> bool:
    """Linux routes all of 127.0.0.0/8 to lo; macOS only has 127.0.0.1 unless aliased."""
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


def who_listens(host: str, port: int) -> str:
    """Best effort: who listens on host:port, in words (`python3 (pid 3912: python -m app
    --port 5000)`), for an error message ('' if unknown)."""
    return "; ".join(_program(name, pid) for name, pid in _listeners(host, port).items())


def listener_pids(host: str, port: int) -> list[int]:
    """Best effort: the pids of the programs listening on host:port ([] if unknown)."""
    return list(_listeners(host, port).values())


def _listeners(host: str, port: int) -> dict[str, int]:
    """{program name: pid} of what listens on host:port, from `ss` (Linux; {} elsewhere)."""
    if not sys.platform.startswith("linux"):
        return {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
        for line in out.splitlines():
            if f"{host}:{port}" in line or f"*:{port}" in line or f"0.0.0.0:{port}" in line:
                # users:(("python3",pid=3912,fd=3),...): one per process holding the socket;
                # one per program (a server's workers share their master's)
                owners = dict(re.findall(r'\("([^"]*)",pid=(\d+)', line)[::-1])
                return {name: int(pid) for name, pid in owners.items()}
    return {}


def listened_by(host: str, port: int, groups: set[int]) -> bool:
    """Something in one of the process groups `groups` listens on host:port, or something
    that `ss` cannot name. A port let go may at once be another program's: that is not
    theirs."""
    if not listening(host, port):
        return False
    pids = listener_pids(host, port)
    return not pids or any(in_groups(pid, groups) for pid in pids)


def in_groups(pid: int, groups: set[int]) -> bool:
    """True if `pid` leads or belongs to one of the process groups `groups` (the testbed
    starts each child in a session of its own: its pid is the group's id, and a worker it
    forked stays in the group even after its parent is gone)."""
    if pid in groups:
        return True
    try:
        return os.getpgid(pid) in groups
    except (ProcessLookupError, PermissionError):
        return False


def _program(name: str, pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv)
    except OSError:
        command = ""
    if len(command) > 80:
        command = command[:77] + "..."
    return f"{name} (pid {pid}" + (f": {command})" if command else ")")


def log_tail(path: str | Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        text = Path(path).read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])
    return "    (no log)"


def ensure_port_free(host: str, port: int, what: str, hint: str) -> None:
    if port_in_use(host, port):
        owner = who_listens(host, port)
        by = f" by {owner}" if owner else ""
        raise UserError(f"{what} {host}:{port} is already in use{by}. {hint}")
