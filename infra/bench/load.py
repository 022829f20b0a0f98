"""Throughput and latency: the same `GET /` under wrk, in five setups.

(a) the seed's way, `flask --app app run` (werkzeug's development server);
(b) `python -m app`, one instance (granian, 2 workers);
(c) the local testbed: Caddy in front of two `python -m app` instances (started by
    infra/bench/testbed.py, which hands its URL in);
(d) Caddy answering by itself with a static response: the most this machine can do;
(e) the previous design, gunicorn with 2 gthread workers x 4 threads, same app.

All the servers are up at once but only one is loaded at a time (idle servers cost
nothing). The setups take turns for a few rounds, a b c d e a b c d e ..., so that a burst of
other work on the machine lands on every setup alike; each setup's figure is its median
round. Before each round the machine's idle CPU is sampled, to show how quiet it was.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.bench.procs import LOOPBACK, ServerProcess, python_argv
from infra.bench.wrk import WrkResult, run_wrk
from infra.console import Progress


@dataclass
class LoadSettings:
    duration_s: int = 10
    connections: int = 16
    threads: int = 2
    warmup_s: int = 1
    rounds: int = 3


@dataclass
class SetupResult:
    key: str
    label: str
    command: str = ""
    rounds: list[WrkResult] = field(default_factory=list)
    idle_before: list[float] = field(default_factory=list)  # % idle CPU before each round
    skipped: str | None = None

    @property
    def result(self) -> WrkResult | None:
        """The median round by requests/s (the lower middle one for an even count)."""
        if not self.rounds:
            return None
        ordered = sorted(self.rounds, key=lambda r: r.requests_per_sec)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def spread(self) -> tuple[float, float] | None:
        if not self.rounds:
            return None
        rps = [r.requests_per_sec for r in self.rounds]
        return min(rps), max(rps)


SETUPS = {
    "a": ("flask run", "flask --app app run (werkzeug development server)"),
    "b": ("python -m app", "python -m app (granian, one instance)"),
    "c": ("Caddy + 2 instances", "local testbed: Caddy -> 2 x python -m app"),
    "d": ("Caddy static", "Caddy static_response (the ceiling)"),
    "e": ("gunicorn gthread", "gunicorn gthread 2 x 4 threads (the previous design)"),
}


def app_env(work: Path, instance_id: str) -> dict[str, str]:
    return {"INSTANCE_ID": instance_id, "SEED_FILE": str(work / f"{instance_id}.seed"),
            "FLASK_DEBUG": "0"}


def flask_dev_server(work: Path, port: int, name: str = "flask-run") -> ServerProcess:
    argv = python_argv("-m", "flask", "--app", "app", "run", "--host", LOOPBACK,
                       "--port", str(port))
    return ServerProcess(name, argv, work, env=app_env(work, "bench-flask"))


def app_server(work: Path, port: int, name: str = "python-m-app") -> ServerProcess:
    argv = python_argv("-m", "app", "--host", LOOPBACK, "--port", str(port))
    return ServerProcess(name, argv, work, env=app_env(work, name))


def gthread_server(work: Path, port: int, name: str = "gunicorn-gthread") -> ServerProcess:
    # What `python -m app` ran before granian: the same app, preloaded, access log on stdout.
    argv = python_argv("-m", "gunicorn", "--workers", "2", "--threads", "4", "--worker-class",
                       "gthread", "--preload", "--keep-alive", "75", "--access-logfile", "-",
                       "--no-control-socket",  # a fixed per-user path: other gunicorns
                       "--bind", f"{LOOPBACK}:{port}", "app:create_app()")
    return ServerProcess(name, argv, work, env=app_env(work, name))


CADDY_STATIC = """\
{{
	admin off
	persist_config off
	auto_https off
}}
http://{host}:{port} {{
	respond "0" 200
}}
"""


def caddy_static_server(caddy: str, work: Path, port: int) -> ServerProcess:
    # admin off: Caddy's admin API would otherwise take localhost:2019, which the
    # testbed's Caddy (or anyone's) may hold. XDG dirs keep its state out of $HOME.
    conf = work / "Caddyfile.static"
    conf.write_text(CADDY_STATIC.format(host=LOOPBACK, port=port))
    env = {"XDG_DATA_HOME": str(work / "caddy-data"), "XDG_CONFIG_HOME": str(work / "caddy-cfg")}
    argv = [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"]
    return ServerProcess("caddy-static", argv, work, env=env)


def display_command(argv: list[str]) -> str:
    """The command as a person would type it: `python`, `caddy`, no .venv or temp paths."""
    head = Path(argv[0]).name
    head = "python" if head.startswith("python") else head
    rest = [Path(a).name if a.startswith("/") else a for a in argv[1:]]
    return shlex.join([head, *rest])


def cpu_idle_percent(sample_s: float = 0.5) -> float:
    """Share of CPU time idle over `sample_s`, all cores, from /proc/stat (-1 if unknown)."""

    def read() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    first = read()
    time.sleep(sample_s)
    second = read()
    if first is None or second is None or second[1] == first[1]:
        return -1.0
    return 100.0 * (second[0] - first[0]) / (second[1] - first[1])


def run_rounds(wrk: str, urls: dict[str, str], results: dict[str, SetupResult],
               settings: LoadSettings, progress: Progress) -> None:
    """wrk against each URL in turn, `settings.rounds` times; warm each one up first."""
    for url in urls.values():
        if settings.warmup_s:
            run_wrk(wrk, url, duration_s=settings.warmup_s, connections=settings.connections,
                    threads=settings.threads)
    for n in range(1, settings.rounds + 1):
        for key, url in urls.items():
            idle = cpu_idle_percent()
            result = run_wrk(wrk, url, duration_s=settings.duration_s,
                             connections=settings.connections, threads=settings.threads)
            results[key].rounds.append(result)
            results[key].idle_before.append(idle)
            progress(f"  round {n}/{settings.rounds} ({key}) {SETUPS[key][0]}: "
                     f"{result.requests_per_sec:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                     f"p99 {result.p99_ms:.2f} ms, errors {result.errors} "
                     f"(CPU idle before: {idle:.0f}%)")


def ratio(results: dict[str, SetupResult], num: str, den: str) -> float | None:
    top, bottom = results.get(num), results.get(den)
    if not top or not bottom or top.result is None or bottom.result is None:
        return None
    if bottom.result.requests_per_sec == 0:
        return None
    return top.result.requests_per_sec / bottom.result.requests_per_sec
