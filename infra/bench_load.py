"""Throughput and latency: the same `GET /` under wrk, in four setups, one after another.

(a) the seed's way, `flask --app app run` (werkzeug's development server);
(b) `python -m app`, one instance (gunicorn);
(c) the local testbed: Caddy in front of two `python -m app` instances (measured by the
    caller, which owns the testbed; see infra/bench.py);
(d) Caddy answering by itself with a static response: the most this machine can do.

Only one setup runs at a time, so they do not compete for the two cores.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from infra.bench_procs import LOOPBACK, ServerProcess, free_port, python_argv
from infra.bench_wrk import WrkResult, run_wrk
from infra.console import Progress


@dataclass
class LoadSettings:
    duration_s: int = 10
    connections: int = 32
    threads: int = 2
    warmup_s: int = 1


@dataclass
class SetupResult:
    key: str
    label: str
    command: str
    result: WrkResult | None = None
    skipped: str | None = None


SETUPS = {
    "a": ("flask run", "flask --app app run  (werkzeug development server)"),
    "b": ("python -m app", "python -m app  (gunicorn, one instance)"),
    "c": ("Caddy + 2 instances", "local testbed: Caddy -> 2 x python -m app"),
    "d": ("Caddy static", "Caddy static_response (the ceiling)"),
}


def app_env(work: Path, instance_id: str) -> dict[str, str]:
    return {"INSTANCE_ID": instance_id, "SEED_FILE": str(work / f"{instance_id}.seed"),
            "FLASK_DEBUG": "0"}


def flask_dev_server(work: Path, port: int) -> ServerProcess:
    argv = python_argv("-m", "flask", "--app", "app", "run", "--host", LOOPBACK,
                       "--port", str(port))
    return ServerProcess("flask-run", argv, work, env=app_env(work, "bench-flask"))


def app_server(work: Path, port: int, name: str = "python-m-app") -> ServerProcess:
    argv = python_argv("-m", "app", "--host", LOOPBACK, "--port", str(port))
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


def measure(wrk: str, url: str, settings: LoadSettings, progress: Progress,
            label: str) -> WrkResult:
    if settings.warmup_s:
        run_wrk(wrk, url, duration_s=settings.warmup_s, connections=settings.connections,
                threads=settings.threads)
    progress(f"  wrk {settings.duration_s}s, {settings.connections} connections -> {label}")
    result = run_wrk(wrk, url, duration_s=settings.duration_s,
                     connections=settings.connections, threads=settings.threads)
    progress(f"  {label}: {result.requests_per_sec:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
             f"p99 {result.p99_ms:.2f} ms, errors {result.errors}")
    return result


def measure_server(key: str, server: ServerProcess, port: int, wrk: str,
                   settings: LoadSettings, progress: Progress) -> SetupResult:
    """Start one server, wait until it answers, load it, stop it."""
    short, label = SETUPS[key]
    url = f"http://{LOOPBACK}:{port}/"
    started = time.monotonic()
    with server:
        server.wait_http(url)
        progress(f"  ({key}) {short} is up on {url} after {time.monotonic() - started:.1f}s")
        result = measure(wrk, url, settings, progress, f"({key}) {short}")
    return SetupResult(key, label, display_command(server.argv), result)


def display_command(argv: list[str]) -> str:
    """The command as a person would type it: `python`, `caddy`, not .venv paths."""
    head = Path(argv[0]).name
    head = "python" if head.startswith("python") else head
    return shlex.join([head, *argv[1:]])


def measure_local_servers(wrk: str, caddy: str | None, work: Path, settings: LoadSettings,
                          progress: Progress) -> dict[str, SetupResult]:
    """Setups (a), (b) and (d): each server started here, alone, on a free port."""
    results: dict[str, SetupResult] = {}
    port = free_port()
    results["a"] = measure_server("a", flask_dev_server(work, port), port, wrk, settings,
                                  progress)
    port = free_port()
    results["b"] = measure_server("b", app_server(work, port), port, wrk, settings, progress)
    if caddy is None:
        results["d"] = SetupResult("d", SETUPS["d"][1], "", skipped="caddy not found")
    else:
        port = free_port()
        results["d"] = measure_server("d", caddy_static_server(caddy, work, port), port, wrk,
                                      settings, progress)
    return results


def ratio(results: dict[str, SetupResult], num: str, den: str) -> float | None:
    top, bottom = results.get(num), results.get(den)
    if not top or not bottom or top.result is None or bottom.result is None:
        return None
    if bottom.result.requests_per_sec == 0:
        return None
    return top.result.requests_per_sec / bottom.result.requests_per_sec
