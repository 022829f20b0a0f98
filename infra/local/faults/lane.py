"""One lane of `local faults`: a process of its own (`python -m infra.local.faults SPEC`) that
brings up a testbed, runs its faults one after the other, and tears the testbed down.

What it tells the run that started it is JSON lines, one LaneMessage a line, on its output
(which its log keeps): progress as it goes, then its result, or the error that stopped it.
Whatever else the lane prints (a warning, a traceback) is not a message, and is shown as
it is. The run reads the log (scheduler.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from botocore.exceptions import ClientError

from infra.errors import UserError
from infra.local.faults.catalog import FAULTS
from infra.local.faults.roundtrip import RoundTrip, run_fault
from infra.local.faults.schema import SchemaError, parse

SCHEMA = "seed-lb/faults-lane/1"  # every message carries it: a line without it is plain output
KINDS = ("progress", "result", "error")


@dataclass
class LaneSpec:
    """What a lane runs, and where (its argv, as JSON)."""

    stack: str
    faults: list[str]
    lb_port: int | None
    first_address: str
    runtime_dir: str | None = None
    region: str = "us-east-1"
    caddy: str | None = None
    endpoint: str | None = None  # the moto server the lanes share
    state_dir: str | None = None
    machines: bool = False  # the lane's instances are booted machines

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LaneSpec:
        return parse(cls, json.loads(text), "a lane's spec")


@dataclass
class LaneMessage:
    """One line a lane writes for the run: progress (`text`), its result (`up_seconds`, one
    RoundTrip per fault) or the error that stopped it (`text`)."""

    lane: str
    kind: str
    text: str = ""
    up_seconds: float | None = None
    trips: list[RoundTrip] = field(default_factory=list)

    def to_line(self) -> str:
        return json.dumps({"schema": SCHEMA, **asdict(self)})

    @classmethod
    def from_line(cls, line: str) -> LaneMessage | None:
        """The message on this line; None when the line is not one (plain output).
        SchemaError when it says it is one and is not what to_line writes."""
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or "schema" not in data:
            return None
        data = dict(data)
        if data.pop("schema") != SCHEMA:
            raise SchemaError(f"a lane's message of another schema: {line[:200]}")
        trips = data.pop("trips", [])
        message = parse(cls, data, "a lane's message")
        if message.kind not in KINDS:
            raise SchemaError(f"a lane's message of kind {message.kind!r}, not one of {KINDS}")
        if message.kind == "result" and message.up_seconds is None:
            raise SchemaError("a lane's result without up_seconds")
        if not isinstance(trips, list):
            raise SchemaError("a lane's message: trips is not a list")
        return dataclasses.replace(
            message, trips=[parse(RoundTrip, t, "a fault's round trip") for t in trips])


def run_lane(spec: LaneSpec, say: Callable[[str], None],
             interrupts=None) -> tuple[float, list[RoundTrip]]:
    """Up, every fault of the lane in turn, down. Returns (up seconds, round trips)."""
    from infra.local.processes import held_port
    from infra.local.testbed import Testbed

    if not spec.lb_port:
        with held_port() as lb_port:  # until the lane is down: Caddy binds it
            return run_lane(dataclasses.replace(spec, lb_port=lb_port), say, interrupts)
    # One worker per app: the drills need no more, and a lane starts quicker on 2 cores.
    bed = Testbed(spec.stack, lb_port=spec.lb_port, runtime_dir=spec.runtime_dir,
                  first_address=spec.first_address, caddy=spec.caddy, region=spec.region,
                  progress=lambda _m: None, mode="test", app_env={"APP_WORKERS": "1"},
                  endpoint=spec.endpoint, machines=spec.machines, interrupts=interrupts,
                  **({"state_dir": spec.state_dir} if spec.state_dir else {}))
    trips: list[RoundTrip] = []
    started = time.monotonic()
    try:
        bed.up()
        up_seconds = time.monotonic() - started
        say(f"up in {up_seconds:.1f}s: {', '.join(spec.faults)}")
        for name in spec.faults:
            try:
                trips.append(run_fault(bed, FAULTS[name], say))
            except (UserError, ClientError) as exc:
                trips.append(RoundTrip(name, problems=[f"stopped: {exc}"]))
    finally:
        bed.down()
    return up_seconds, trips


def _emit(message: LaneMessage) -> None:
    print(message.to_line(), flush=True)


def lane_main(argv: list[str]) -> int:
    """`python -m infra.local.faults SPEC_JSON`: one lane, for `local faults`."""
    from infra.local.interrupts import Interrupts, sigterm_as_interrupt

    spec = LaneSpec.from_json(argv[0])

    def say(text: str) -> None:
        _emit(LaneMessage(spec.stack, "progress", text=text))

    try:
        with sigterm_as_interrupt(Interrupts()) as interrupts:
            up_seconds, trips = run_lane(spec, say, interrupts)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        _emit(LaneMessage(spec.stack, "error", text=str(exc)))
        return 1
    _emit(LaneMessage(spec.stack, "result", up_seconds=up_seconds, trips=trips))
    return 0
