"""`local faults`: every fault, in parallel lanes, on one moto server as one control plane.

Each lane is a subprocess with a testbed of its own (its stack, Caddy, supervisor and apps;
lane.py), recorded by the run that owns them all (ownership.py). The faults are shared out
longest first onto the least loaded lane; those that need booted machines get a lane of
their own, or are skipped, with the reason, where this machine cannot boot machines. The
lanes' messages come back through their logs, as JSON lines (lane.LaneMessage).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from infra.aws.emulator import FAKE_CREDENTIALS
from infra.local import motoserver
from infra.local.faults.catalog import FAULTS
from infra.local.faults.lane import LaneMessage, LaneSpec
from infra.local.faults.ownership import LANE_PREFIX, FaultsRun, run_root
from infra.local.faults.roundtrip import RoundTrip
from infra.local.faults.schema import SchemaError

ADDRESSES_PER_LANE = 8  # each lane's first address is 8 after the one before


def lanes(names: list[str], count: int) -> list[list[str]]:
    """Share the faults out over `count` lanes, longest first onto the least loaded lane."""
    count = max(1, min(count, len(names)))
    loads: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(count)]
    for name in sorted(names, key=lambda n: -FAULTS[n].seconds):
        load, members = min(loads, key=lambda lane: lane[0])
        loads.remove((load, members))
        loads.append((load + FAULTS[name].seconds, [*members, name]))
    return [members for _, members in loads if members]


def plan(names: list[str], *, stack: str, lanes_wanted: int, lb_port: int | None, base: str,
         region: str, caddy: str | None, endpoint: str, root: Path,
         state_dir: str | None) -> list[LaneSpec]:
    """The lanes: the faults shared out, then one lane for those that boot machines."""
    booted = [n for n in names if FAULTS[n].booted]
    shared = lanes([n for n in names if n not in booted], lanes_wanted) + \
        ([booted] if booted else [])
    return [LaneSpec(stack=f"{stack}-f{i + 1}", faults=lane,
                     machines=any(FAULTS[n].booted for n in lane),
                     lb_port=lb_port + i if lb_port else None,
                     first_address=str(ipaddress.IPv4Address(base) + ADDRESSES_PER_LANE * i),
                     region=region, caddy=caddy, endpoint=endpoint,
                     runtime_dir=str(root / "lanes" / f"{stack}-f{i + 1}"), state_dir=state_dir)
            for i, lane in enumerate(shared)]


def run_all(names: list[str], *, stack: str, lanes_wanted: int, lb_port: int | None,
            first_address: str | None, region: str, caddy: str | None,
            say: Callable[[str], None], root: str | Path | None = None,
            state_dir: str | None = None, stop_hint: str = "",
            interrupts=None) -> tuple[list[RoundTrip], dict]:
    """Every named fault, in parallel lanes: one subprocess and one testbed (its own stack,
    Caddy, supervisor and apps) each, all on one moto server, as one control plane.

    `root`: the runtime directory of it all (default .local/<stack>-faults). One run per
    root at a time (ownership.FaultsRun); `stop_hint` says how to stop the one running."""
    from infra.local.runtime import child_env

    rng = random.Random()  # noqa: S311 - a loopback address, not a secret
    base = first_address or f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.11"
    names = _bootable(names, say)
    run = FaultsRun(root or run_root(stack), stack, stop_hint, interrupts)
    with run.owned(say) as processes:
        say("control plane: one moto server for every lane")
        try:
            endpoint = motoserver.start(
                processes, child_env(**FAKE_CREDENTIALS),
                table=run.root / "lanes" / "*" / motoserver.HEALTH_TABLE)
            _warm(endpoint, region)
            specs = plan(names, stack=stack, lanes_wanted=lanes_wanted, lb_port=lb_port,
                         base=base, region=region, caddy=caddy, endpoint=endpoint,
                         root=run.root, state_dir=state_dir)
            say(f"{len(names)} faults in {len(specs)} lanes: "
                + "; ".join(f"{s.stack}: {', '.join(s.faults)}" for s in specs))
            return _run_lanes(specs, run, say)
        finally:
            record = processes.record(motoserver.NAME)
            if record is not None:
                say(f"the shared moto server used {_cpu_seconds(record.pid):.1f} s of CPU")


def _bootable(names: list[str], say: Callable[[str], None]) -> list[str]:
    """The faults this machine can run: those that boot machines only where it can."""
    booted = [n for n in names if FAULTS[n].booted]
    if not booted:
        return names
    from infra.local.machines.backend import why_not

    why = why_not()
    if not why:
        return names
    say(f"{', '.join(booted)}: skipped: {why}")
    return [n for n in names if n not in booted]


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _warm(endpoint: str, region: str) -> None:
    """moto builds each service's backend on its first call: once, before the lanes start."""
    from infra.aws.emulator import emulator_clients

    clients = emulator_clients(endpoint, region)
    clients.ec2.describe_availability_zones()
    clients.elbv2.describe_load_balancers()


class LaneReports:
    """What the lanes said: each one's result or error; their progress passed on as it comes
    (followers' threads call `heard`)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.results: dict[str, LaneMessage] = {}
        self.errors: dict[str, str] = {}

    def heard(self, spec: LaneSpec, line: str) -> None:
        try:
            message = LaneMessage.from_line(line)
            if message is not None and message.lane != spec.stack:
                raise SchemaError(f"a message of lane {message.lane!r}")
        except SchemaError as exc:
            self.errors.setdefault(spec.stack, f"{spec.stack}: {exc}")
            return
        if message is None:
            self.say(line)  # not a message: a warning, a traceback's line
        elif message.kind == "progress":
            self.say(f"[{message.lane}] {message.text}")
        elif message.kind == "result":
            self.results[spec.stack] = message
        else:
            self.errors.setdefault(spec.stack, f"{spec.stack}: {message.text}")

    def trips(self, specs: list[LaneSpec]) -> list[RoundTrip]:
        """Every fault's round trip, in the table's order; a lane that sent no result gives
        its faults its error (or "the lane failed")."""
        trips: list[RoundTrip] = []
        for spec in specs:
            found = self.results.get(spec.stack)
            if found is None:
                problem = self.errors.get(spec.stack, "the lane failed")
                trips += [RoundTrip(n, problems=[problem]) for n in spec.faults]
            else:
                trips += found.trips
        order = list(FAULTS)
        return sorted(trips, key=lambda t: order.index(t.fault))

    def up_seconds(self) -> dict[str, float]:
        return {stack: message.up_seconds for stack, message in self.results.items()}


def _run_lanes(specs: list[LaneSpec], run: FaultsRun, say: Callable[[str], None]
               ) -> tuple[list[RoundTrip], dict]:
    reports = LaneReports(say)
    started = [_start_lane(spec, run, reports) for spec in specs]
    for proc, _follower in started:  # Ctrl-C: the run's owner (FaultsRun.owned) stops them
        proc.wait()
    for _proc, follower in started:
        follower.join(timeout=5)
    return reports.trips(specs), {"lanes": [asdict(s) for s in specs],
                                  "up_seconds": reports.up_seconds()}


def _start_lane(spec: LaneSpec, run: FaultsRun, reports: LaneReports
                ) -> tuple[subprocess.Popen, threading.Thread]:
    """The lane as a process of the run's own, recorded as it starts; its output goes to its
    log, followed from here, so that a lane outlives nothing it needs."""
    name = f"{LANE_PREFIX}{spec.stack}"
    log = run.processes.log_dir / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    proc, _record = run.processes.start(
        name, [sys.executable, "-m", "infra.local.faults", spec.to_json()])
    follower = threading.Thread(
        target=_follow, args=(log, offset, proc, lambda line: reports.heard(spec, line)),
        daemon=True)
    follower.start()
    return proc, follower


def _follow(log: Path, offset: int, proc: subprocess.Popen, handle: Callable[[str], None]
            ) -> None:
    """A lane's log lines after `offset` (past the header ProcessGroup writes), as they
    come, until the lane has ended and every line is read."""
    buffer, header = "", True
    with open(log, errors="replace") as stream:
        stream.seek(offset)
        while True:
            ended = proc.poll() is not None
            chunk = stream.read()
            if not chunk:
                if ended:
                    break
                time.sleep(0.1)
                continue
            *lines, buffer = (buffer + chunk).split("\n")
            for line in lines:
                if header:
                    header = False  # "--- 12:00:00 python -m infra.local.faults {...}"
                    continue
                handle(line)
    if buffer:
        handle(buffer)
