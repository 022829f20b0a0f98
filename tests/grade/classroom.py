"""A class of student setups on loopback, for grading a roster: small local servers, each a
"load balancer" over in-memory instances (round robin, X-Served-By), correct or with one
pitfall; black holes (SYNs dropped); hung apps (they answer a minute late); refused ports;
and bad addresses.

    python tests/grade/classroom.py ROSTER.csv [--correct 20 --bytes-literal 10 ...]

writes a roster whose setups it then serves until Ctrl-C (for benchmarks: the grader runs in
another process, as it would against real load balancers).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from raw_servers import blackhole

# kind -> (GET body from the seed, Content-Type)
BODIES = {
    "correct": (lambda seed: str(seed), "text/plain"),
    "bytes-literal": (lambda seed: str(json.dumps(str(seed)).encode() + b"\n"), "text/html"),
    "json-quoted": (lambda seed: json.dumps(str(seed)) + "\n", "application/json"),
    "whitespace": (lambda seed: f"{seed}\n", "text/html"),
    "json-number": (lambda seed: str(seed), "application/json"),  # FastAPI's `return seed`
}
# the finding code each kind must produce, by check number
EXPECTED = {
    "correct": {},
    "json-number": {},  # a PASS, with a warning
    "bytes-literal": {3: "bytes-literal"},
    "json-quoted": {3: "json-quoted"},
    "whitespace": {3: "whitespace"},
    "single": {5: "single-instance"},
    "ignores-post": {4: "post-not-applied"},
    "blackhole": {1: "connect-timeout"},
    "hung": {2: "read-timeout"},
    "refused": {1: "refused"},
    "empty": {1: "no-address"},
    "garbage": {1: "bad-address"},
}


@dataclass
class Instance:
    name: str
    seed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tally = threading.Lock()
        self.connections = 0  # accepted, whatever came after
        self.requests = 0  # answered
        self.posted: list[int] = []  # the numbers POSTed, in the order they came

    def process_request(self, request, client_address):
        with self.tally:
            self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # a grader that hangs up early is not news


def _handler(kind: str, pick, delay: float = 0.0):
    body_of, ctype = BODIES.get(kind, BODIES["correct"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _counted(self, answer) -> None:
            time.sleep(delay)
            answer()
            with self.server.tally:
                self.server.requests += 1

        def do_GET(self):  # noqa: N802 - http.server's name
            self._counted(self._get)

        def do_POST(self):  # noqa: N802
            self._counted(self._post)

        def _send(self, status: int, body: str, instance: Instance, content_type=ctype):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Served-By", instance.name)
            self.end_headers()
            self.wfile.write(data)

        def _get(self):
            instance = pick()
            with instance.lock:
                seed = instance.seed
            self._send(200, body_of(seed), instance)

        def _post(self):
            instance = pick()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 65536))
            try:
                num = int(json.loads(raw)["num"])
            except (ValueError, KeyError, TypeError):
                self._send(400, '{"error": "send {\\"num\\": N}"}', instance, "application/json")
                return
            with self.server.tally:
                self.server.posted.append(num)
            if kind != "ignores-post":
                with instance.lock:
                    instance.seed = num
            self._send(200, str(num), instance, "text/plain")

    return Handler


def _serve(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()


@dataclass
class Setup:
    kind: str
    address: str
    instances: list[str] = field(default_factory=list)
    servers: list = field(default_factory=list)
    sockets: list = field(default_factory=list)

    @property
    def connections(self) -> int:
        """TCP connections accepted by this setup's servers (load balancer and instances)."""
        return sum(server.connections for server in self.servers)

    @property
    def requests(self) -> int:
        """HTTP requests answered by this setup's load balancer."""
        return self.servers[0].requests if self.servers else 0

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for sock in self.sockets:
            sock.close()


def start_setup(kind: str, n: int, host: str = "127.0.0.1", with_instances: bool = False,
                delay: float = 0.0) -> Setup:
    """One student's setup of `kind` (see EXPECTED), named after `n`."""
    if kind == "blackhole":
        return _blackhole(host)
    if kind == "refused":  # bound and never listening: refused, and no one else gets the port
        held = socket.socket()
        held.bind((host, 0))
        return Setup(kind, f"{host}:{held.getsockname()[1]}", sockets=[held])
    if kind == "empty":
        return Setup(kind, "")
    if kind == "garbage":
        return Setup(kind, "not a load balancer!")
    if kind == "hung":  # it answers a minute late: each grade costs one --timeout
        return replace(start_setup("correct", n, host, with_instances, delay=60), kind=kind)
    count = 1 if kind == "single" else 2
    instances = [Instance(f"s{n}-i{k}") for k in range(count)]
    turn = iter(range(10**9))
    lock = threading.Lock()

    def round_robin() -> Instance:
        with lock:
            return instances[next(turn) % len(instances)]

    lb = _Quiet((host, 0), _handler(kind, round_robin, delay))
    _serve(lb)
    setup = Setup(kind, f"{host}:{lb.server_address[1]}", servers=[lb])
    if with_instances:
        for instance in instances:
            direct = _Quiet((host, 0), _handler(kind, lambda i=instance: i))
            _serve(direct)
            setup.servers.append(direct)
            setup.instances.append(f"{host}:{direct.server_address[1]}")
    return setup


def _blackhole(host: str) -> Setup:
    listener, *fillers = blackhole(host)
    return Setup("blackhole", f"{host}:{listener.getsockname()[1]}", sockets=[listener, *fillers])


def start_class(counts: dict[str, int], with_instances: int = 0) -> list[Setup]:
    """Setups in an interleaved order (so that slow ones are spread over the roster); the
    first `with_instances` correct ones also expose their instances."""
    queues = {kind: list(range(n)) for kind, n in counts.items()}
    setups: list[Setup] = []
    n = 0
    while any(queues.values()):
        for kind in counts:
            if queues[kind]:
                queues[kind].pop()
                extra = kind == "correct" and with_instances > 0
                with_instances -= extra
                setups.append(start_setup(kind, n, with_instances=extra))
                n += 1
    return setups


def write_roster(setups: list[Setup], path: Path, *, bom: bool = False,
                 newline: str = "\r\n") -> None:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f, lineterminator=newline)
        writer.writerow(["Student", "Address", "Instances"])
        for i, setup in enumerate(setups):
            writer.writerow([f"student-{i:02d} ({setup.kind})", setup.address,
                             ",".join(setup.instances)])


# -- the real CLI, as an instructor runs it ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def grade_cli(*args, timeout=120, allow_private=True, env=None, cwd=ROOT):
    """`python -m infra grade ARGS` in a subprocess: (CompletedProcess, seconds). These setups
    are on loopback, which a class run and Gradescope refuse (students' addresses must be
    public): unless told otherwise, the tests allow it, as the docs say to."""
    if allow_private and {"--roster", "--gradescope", "--submission"} & set(args):
        args = (*args, "--allow-private")
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "infra", "grade", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - started


def read_gradebook(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roster")
    defaults = {"correct": 20, "bytes-literal": 10, "json-quoted": 10, "blackhole": 10,
                "refused": 8, "empty": 1, "garbage": 1}
    for kind, n in defaults.items():
        parser.add_argument(f"--{kind}", type=int, default=n)
    parser.add_argument("--with-instances", type=int, default=5,
                        help="correct setups whose instances are in the roster too")
    args = parser.parse_args()
    counts = {kind: getattr(args, kind.replace("-", "_")) for kind in defaults}
    setups = start_class(counts, args.with_instances)
    write_roster(setups, Path(args.roster))
    print(f"{len(setups)} setups serving; roster in {args.roster}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for setup in setups:
            setup.close()


if __name__ == "__main__":
    main()
