"""What one `local faults` run owns: its moto server and its lanes, under `.local/<stack>-faults/`.

- One run per stack at a time: a second one with the same --stack is refused at once, and
  the refusal names the first run's pid (`faults.json` records the running owner).
- Every process it starts gets its pid file in the same step as its start, which no Ctrl-C or
  SIGTERM splits (the command's Interrupts), and the lanes record theirs under `lanes/<lane>/`.
- Ctrl-C (or SIGTERM) at any moment stops all of it, lanes first (each tears its testbed
  down), then what a lane left, then moto. So does `local down` with the same --stack,
  also after the run itself was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from infra.console import quiet
from infra.errors import UserError
from infra.local.interrupts import Interrupts
from infra.local.processes import (
    ProcessGroup,
    ProcessRecord,
    is_ours,
    same_process,
    start_token,
    wait_until,
)

OWNER_FILE = "faults.json"
LANE_PREFIX = "lane-"  # the lanes' names among the run's processes
LANE_STOP_SECONDS = 15.0  # a lane tears its testbed down on SIGTERM: a second or two
OWNER_STOP_SECONDS = 30.0  # `local down` waits this long for a running `local faults` to end


def run_root(stack: str) -> Path:
    """Where `local faults --stack STACK` keeps its processes (and its lanes theirs): beside
    the testbeds' runtime directories, in the checkout it is run from, as theirs are. (A
    second checkout sharing this code, linked, has its own runs: its `local down` stops none
    of this one's.)"""
    from infra.local.runtime import RUNTIME_ROOT

    return (Path(RUNTIME_ROOT) / f"{stack}-faults").resolve()




class FaultsRun:
    """The processes of `local faults` for one stack, found again from their pid files."""

    def __init__(self, root: str | Path, stack: str, stop_hint: str = "",
                 interrupts: Interrupts | None = None):
        self.root = Path(root).resolve()
        self.stack = stack
        self.stop_hint = stop_hint  # how the user stops it, for the refusal
        self.interrupts = interrupts or Interrupts()  # the running command's
        self.processes = ProcessGroup(self.root, self.interrupts)
        self.owner_path = self.root / OWNER_FILE

    # --- what runs ---------------------------------------------------------------------
    def owner(self) -> dict | None:
        """The running `local faults` that owns this root (not this process), or None."""
        try:
            owner = json.loads(self.owner_path.read_text())
            pid, token = int(owner["pid"]), str(owner.get("started", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pid == os.getpid() or not same_process(pid, token):
            return None
        return owner

    def lane_groups(self) -> list[ProcessGroup]:
        lanes = self.root / "lanes"
        return [ProcessGroup(d, self.interrupts) for d in sorted(lanes.iterdir()) if d.is_dir()] \
            if lanes.is_dir() else []

    def records(self) -> list[ProcessRecord]:
        """Every recorded process of the run, its lanes' testbeds' included, still alive."""
        groups = [self.processes, *self.lane_groups()]
        return [r for g in groups for r in g.records() if is_ours(r)]

    def active(self) -> bool:
        return self.owner() is not None or bool(self.records())

    # --- owning it ---------------------------------------------------------------------
    @contextlib.contextmanager
    def owned(self, say: Callable[[str], None] = quiet) -> Iterator[ProcessGroup]:
        """This process runs the drills of this stack: refused at once while another run
        does; a killed run's leftovers are stopped first; everything is stopped on the way
        out, whatever ends the run."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two starts at once: the second sees the first
            owner = self.owner()
            if owner is not None:
                stop = f" Wait for it to finish, or stop it: {self.stop_hint}." \
                    if self.stop_hint else ""
                raise UserError(f"`local faults` for stack {self.stack} is already running "
                                f"(pid {owner['pid']}); nothing was changed.{stop}")
            left = self.records()
            if left:
                say(f"a killed run left {', '.join(r.describe() for r in left)}: stopping it")
                self.stop()
            self._write_owner()
        try:
            yield self.processes
        finally:
            with self.interrupts.cleaning():
                self.stop(say)
                with contextlib.suppress(FileNotFoundError):
                    self.owner_path.unlink()

    def _write_owner(self) -> None:
        tmp = self.owner_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started": start_token(os.getpid()),
                                   "argv": sys.argv}))
        tmp.replace(self.owner_path)

    # --- stopping it -------------------------------------------------------------------
    def stop(self, say: Callable[[str], None] = quiet) -> list[str]:
        """Lanes first (SIGTERM: each tears its testbed down, as on Ctrl-C), then whatever a
        lane left behind, then the moto server they share. Returns what was running."""
        lanes = [r.name for r in self.processes.records() if r.name.startswith(LANE_PREFIX)]
        signalled = self.processes.signal_many(lanes)
        if signalled:
            say(f"stopping {len(signalled)} lanes")
        stopped = self.processes.wait_stopped(signalled, LANE_STOP_SECONDS)
        for group in self.lane_groups():
            stopped += group.stop_all()
        stopped += self.processes.stop_all()
        return stopped

    def stop_from_outside(self, say: Callable[[str], None] = quiet) -> list[str]:
        """`local down`: a running owner is asked to stop (SIGTERM, its own Ctrl-C) and
        given the time to; then whatever is left, also of a killed run, is stopped here."""
        stopped = []
        owner = self.owner()
        if owner is not None:
            pid = int(owner["pid"])
            say(f"stopping `local faults` (pid {pid}) for stack {self.stack}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda: self.owner() is None or self.interrupts.hurry.is_set(),
                              OWNER_STOP_SECONDS, 0.1):
                say(f"`local faults` (pid {pid}) did not end within {OWNER_STOP_SECONDS:.0f}s:"
                    " stopping its processes here")
            stopped.append(f"local faults (pid {pid})")
        stopped += self.stop(say)
        if self.owner() is None:
            with contextlib.suppress(FileNotFoundError):
                self.owner_path.unlink()
        return stopped
