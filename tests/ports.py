"""Loopback ports for servers that a test starts, held until the test ends.

Binding port 0, reading the port back and closing the socket leaves a gap in which another
test (xdist runs several at once) can bind the same port. A held port stays bound, with
SO_REUSEADDR and SO_REUSEPORT and without listening: any server that binds it with either
option (granian, gunicorn, werkzeug, Caddy, http.server all do) can still take it, a port
0 bind elsewhere never gets it, and a connection to it is refused until a server listens.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def held_port(host: str = "127.0.0.1") -> Iterator[int]:
    with hold(host) as sock:
        yield sock.getsockname()[1]


def hold(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A socket holding a free port on `host` (close it to let the port go)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def hold_consecutive(count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """Sockets holding `count` consecutive free ports on `host`, the lowest first: for a
    command that takes a port and the next ones (`local faults --lb-port P`: P, P+1, ...)."""
    while True:
        socks = [hold(host)]
        first = socks[0].getsockname()[1]
        try:
            socks += [hold(host, first + i) for i in range(1, count)]
            return socks
        except (OSError, OverflowError):  # one of the next ones is taken: try elsewhere
            for sock in socks:
                sock.close()


@pytest.fixture
def free_port() -> Iterator[int]:
    """A loopback port held until the test ends (imported by the conftests that use it, in
    place of tests/conftest.py's, which lets the port go at once)."""
    with held_port() as port:
        yield port
