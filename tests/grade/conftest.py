"""Real HTTP servers on loopback for the grader: a correct seed app, one per FAQ pitfall,
and Caddy as the load balancer in front of them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from infra.grade.address import Endpoint
from infra.local.processes import hold_port, listening, wait_until

ROOT = Path(__file__).resolve().parents[2]
CADDY = ROOT / ".venv" / "bin" / "caddy"
TIMEOUT = 0.5  # the grader's per-request timeout in these tests: loopback answers in ms


# -- servers --------------------------------------------------------------------------------

@pytest.fixture
def serve():
    """serve(app) -> Endpoint: a threaded werkzeug server on a free loopback port."""
    servers = []

    def start(app) -> Endpoint:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return Endpoint("127.0.0.1", server.server_port)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def silent_server():
    """Accepts connections, reads, never answers: a hung app."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Endpoint("127.0.0.1", listener.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def blackhole():
    """A port whose SYNs are dropped, as behind a security group (raw_servers.blackhole)."""
    from raw_servers import blackhole

    listener, *fillers = blackhole()
    yield Endpoint("127.0.0.1", listener.getsockname()[1])
    for s in (*fillers, listener):
        s.close()


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on: bound, never listening, held until the test ends
    (a connection is refused, and no other test can take the port meanwhile)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield Endpoint("127.0.0.1", held.getsockname()[1])


@pytest.fixture
def caddy(tmp_path):
    """caddy(upstreams) -> Endpoint: a real Caddy reverse proxy, round robin over them."""
    procs = []

    def start(upstreams: list[Endpoint], policy: str | dict = "round_robin") -> Endpoint:
        held = hold_port()  # until the test ends: Caddy binds it with SO_REUSEADDR
        port = held.getsockname()[1]
        config = {
            "admin": {"disabled": True, "config": {"persist": False}},
            "logging": {"logs": {"default": {"level": "ERROR"}}},
            "apps": {"http": {"servers": {"lb": {
                "listen": [f"127.0.0.1:{port}"],
                "automatic_https": {"disable": True},
                "routes": [{"handle": [{
                    "handler": "reverse_proxy",
                    "upstreams": [{"dial": str(u)} for u in upstreams],
                    "load_balancing": {"selection_policy": policy if isinstance(policy, dict)
                                       else {"policy": policy}},
                }]}],
            }}}},
        }
        path = tmp_path / f"caddy-{port}.json"
        path.write_text(json.dumps(config))
        env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
                   XDG_DATA_HOME=str(tmp_path / "data"))
        log = open(tmp_path / f"caddy-{port}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(CADDY), "run", "--config", str(path)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log, held))
        return _listening(proc, port, Path(log.name), "caddy", seconds=10, poll=0.02)

    yield start
    for proc, log, held in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        held.close()


def _listening(proc: subprocess.Popen, port: int, log: Path, what: str, *, seconds: float,
               poll: float) -> Endpoint:
    """Wait until `proc` accepts connections on `port`; fail with its log if it exits."""
    def accepts() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        return listening("127.0.0.1", port)

    if not wait_until(accepts, seconds, poll):
        raise RuntimeError(f"{what} did not listen within {seconds:g} s")
    return Endpoint("127.0.0.1", port)


@pytest.fixture
def lb_of(serve, caddy):
    """lb_of(factory, n=2, named=True) -> (lb, [backends]): n copies of an app behind Caddy."""

    def start(factory, n: int = 2, named: bool = True):
        backends = [serve(factory(f"i-{k}" if named else None)) for k in range(n)]
        return caddy(backends), backends

    return start


@pytest.fixture
def real_app(tmp_path):
    """real_app(name) -> Endpoint: the project's own `python -m app` (granian), running."""
    procs = []

    def start(name: str) -> Endpoint:
        held = hold_port()  # until the test ends: granian binds it with SO_REUSEPORT
        port = held.getsockname()[1]
        env = dict(os.environ, INSTANCE_ID=name, PYTHONPATH=str(ROOT))
        env.pop("SEED_FILE", None)
        log = open(tmp_path / f"app-{name}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append((proc, log, held))
        return _listening(proc, port, Path(log.name), "the app", seconds=20, poll=0.05)

    yield start
    for proc, _, _ in procs:
        proc.terminate()
    for proc, log, held in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
        held.close()


@pytest.fixture
def scripted():
    """scripted(script, **kw) -> ScriptedServer: a raw server answering every connection
    with the script's bytes and delays (see raw_servers.py)."""
    from raw_servers import ScriptedServer

    servers = []

    def start(script, **kw) -> ScriptedServer:
        server = ScriptedServer(script, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
