"""Where the local data path goes when AWS's network rules would stop a packet.

Three small sockets on 127.0.0.1, each standing for what a client sees on AWS:

- `HoldSink`: accepts and never answers. An upstream that a security group cuts off: the
  load balancer (Caddy) and its health checks wait until their timeout, as an ALB waits on
  a target whose security group drops its SYNs (Target.Timeout; a 504 for the client).
- `DropSink`: a listener whose accept queue is full, so the kernel drops new SYNs and a
  client's connect() times out. The load balancer's own address when its security group
  does not admit the internet, or when it is internal: the autograder sees a TCP connect
  timeout, exactly as on AWS.
- `RefuseSink`: a port bound but not listening, so connect() is refused at once: a port
  nothing listens on, as an instance answers on a port its app does not use.

They are not proxies: nothing is forwarded, and Caddy stays the load balancer.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time

from infra.local.processes import HOLDS_PORTS, bound_socket, free_port, hold_port, wait_until

HOST = "127.0.0.1"
HOLD_MAX_SECONDS = 120.0  # a held connection nobody closes is dropped after this


class HoldSink:
    """Accept connections, read and discard what they send, never answer."""

    def __init__(self, host: str = HOST):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.address = _address(self.listener)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ, None)
        self._held: dict[socket.socket, float] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"hold {self.address}")
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self.listener:
                    with contextlib.suppress(OSError):
                        conn, _ = self.listener.accept()
                        conn.setblocking(False)
                        self._held[conn] = time.monotonic()
                        self._selector.register(conn, selectors.EVENT_READ, None)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the client gave up: let go of it
                    self._release(conn)
            cutoff = time.monotonic() - HOLD_MAX_SECONDS
            for conn in [c for c, since in self._held.items() if since < cutoff]:
                self._release(conn)

    def _release(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(conn)
        self._held.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        for conn in list(self._held):
            self._release(conn)
        with contextlib.suppress(OSError):
            self.listener.close()


class DropSink:
    """Listen on `host:port` with a full accept queue: SYNs are dropped, connect() times out.

    Linux drops a SYN when the listener's accept queue is full (tcp_conn_request); a backlog
    of 0 holds one connection, which the sink fills itself and never accepts.
    """

    def __init__(self, host: str, port: int, bind_timeout: float = 3.0):
        self.address = f"{host}:{port}"
        self.listener = _bind_retrying(host, port, bind_timeout)
        self.listener.listen(0)
        self._filler = socket.socket()
        self._filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            self._filler.connect((host, port))

    def close(self) -> None:
        for sock in (self._filler, self.listener):
            with contextlib.suppress(OSError):
                sock.close()


class RefuseSink:
    """A port bound and never listened on: connect() is refused (RST), and no one else can
    take the port while the sink holds it."""

    def __init__(self, host: str = HOST):
        self.socket = socket.socket()
        self.socket.bind((host, 0))
        self.address = _address(self.socket)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def _bind_retrying(host: str, port: int, timeout: float) -> socket.socket:
    """Bind host:port, retrying while Caddy is still letting go of it after a reload."""
    bound: list[socket.socket] = []

    def bind_once() -> bool:
        with contextlib.suppress(OSError):
            bound.append(bound_socket(host, port))
        return bool(bound)

    wait_until(bind_once, timeout, 0.05)
    return bound[0] if bound else bound_socket(host, port)  # the last try raises its OSError


class Sinks:
    """The supervisor's sinks: one hold and one refuse sink per target (Caddy tells its
    upstreams apart by address), created on first use and kept; at most one drop sink."""

    def __init__(self):
        self._holds: dict[str, HoldSink] = {}
        self._refusers: dict[str, RefuseSink] = {}
        self.drop: DropSink | None = None
        self._reserved: dict[str, socket.socket] = {}

    def reserve(self, address: str) -> str:
        """Hold `address` ("host:port"; port 0: a free one) from now on (processes.hold_port),
        so that it is still free when Caddy or the drop sink moves there, and not some
        connection's local port. A port a listener has now is held once the listener lets
        go of it: call again then. Returns the address."""
        host, port = address.rsplit(":", 1)
        if address in self._reserved:
            return address
        if not HOLDS_PORTS:
            return address if port != "0" else f"{host}:{free_port(host)}"
        with contextlib.suppress(OSError):  # a listener has it: Caddy, still serving
            sock = hold_port(host, int(port))
            address = _address(sock)
            self._reserved[address] = sock
        return address

    def hold(self, key: str) -> str:
        if key not in self._holds:
            self._holds[key] = HoldSink()
        return self._holds[key].address

    def refuse(self, key: str) -> str:
        if key not in self._refusers:
            self._refusers[key] = RefuseSink()
        return self._refusers[key].address

    def is_hold(self, address: str) -> bool:
        return any(s.address == address for s in self._holds.values())

    def open_drop(self, address: str) -> None:
        if self.drop is not None and self.drop.address == address:
            return
        self.close_drop()
        host, port = address.rsplit(":", 1)
        self.drop = DropSink(host, int(port))

    def close_drop(self) -> None:
        """Close the drop sink and hold its address at once: Caddy is about to listen there."""
        if self.drop is not None:
            self.drop.close()
            self.reserve(self.drop.address)
            self.drop = None

    def close(self) -> None:
        self.close_drop()
        for sink in [*self._holds.values(), *self._refusers.values()]:
            sink.close()
        self._holds.clear()
        self._refusers.clear()
        for sock in self._reserved.values():
            sock.close()
        self._reserved.clear()
