"""Slow clients: does one client still get its GETs while 200 others hold connections?

The slow connections are of three kinds, in turn: idle (connected, nothing sent), dripping
headers (a header line every half second, never the blank line), and half a body (headers
with Content-Length: 100, then 8 bytes). Meanwhile one client sends `GET /` on a new
connection each time (so that every worker gets its share), each with a 2 s timeout, for
the whole window. The figures: the share of those GETs answered 200, their latencies, and
whether the server serves normally once the slow clients are gone.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

KINDS = ("idle", "dripping headers", "half a body")
HALF_BODY = (b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100\r\n\r\n{\"num\": ")


@dataclass
class SlowClientResult:
    slow_connections: int
    window_s: float
    attempts: int = 0
    served: int = 0  # 200 within the timeout
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # kind of failure -> count
    served_after: int = 0  # of AFTER_GETS once the slow clients are gone
    refused: int = 0  # slow connections the server would not even accept

    @property
    def share(self) -> float:
        return self.served / self.attempts if self.attempts else 0.0

    def percentile(self, pct: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


AFTER_GETS = 20


def open_slow_connections(host: str, port: int,
                          count: int) -> tuple[list[tuple[str, socket.socket]], int]:
    """`count` slow connections, the kinds in turn, and how many were refused."""
    clients, refused = [], 0
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        try:
            sock = socket.create_connection((host, port), timeout=5)
            if kind == "dripping headers":
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n")
            elif kind == "half a body":
                sock.sendall(HALF_BODY)
        except OSError:
            refused += 1
            continue
        clients.append((kind, sock))
    return clients, refused


def _drip(clients: list[tuple[str, socket.socket]], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        for kind, sock in clients:
            if kind == "dripping headers":
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # the server has cut it off: its header timeout works


def _get(session: requests.Session, url: str, timeout: float) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        response = session.get(url, timeout=timeout, headers={"Connection": "close"})
    except requests.Timeout:
        return False, 0.0, "timeout"
    except requests.RequestException as exc:
        return False, 0.0, type(exc).__name__
    elapsed = (time.monotonic() - started) * 1000
    return response.status_code == 200, elapsed, f"HTTP {response.status_code}"


def run_slow_clients(url: str, *, connections: int = 200, window_s: float = 15.0,
                     timeout_s: float = 2.0, pause_s: float = 0.02) -> SlowClientResult:
    """Hold `connections` slow connections to `url`'s server for `window_s`; GET meanwhile."""
    parts = urlsplit(url)
    result = SlowClientResult(connections, window_s)
    clients, result.refused = open_slow_connections(parts.hostname, parts.port, connections)
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(clients, stop), daemon=True)
    dripper.start()
    session = requests.Session()
    session.trust_env = False  # loopback only, never a proxy
    try:
        deadline = time.monotonic() + window_s
        while time.monotonic() < deadline:
            ok, elapsed, what = _get(session, url, timeout_s)
            result.attempts += 1
            if ok:
                result.served += 1
                result.latencies_ms.append(elapsed)
            else:
                result.failures[what] = result.failures.get(what, 0) + 1
            time.sleep(pause_s)
    finally:
        stop.set()
        dripper.join(timeout=2)
        for _, sock in clients:
            sock.close()
    time.sleep(0.5)  # let the server see the closes
    result.served_after = sum(_get(session, url, 5.0)[0] for _ in range(AFTER_GETS))
    session.close()
    return result
