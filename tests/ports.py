"""Loopback ports for servers that a test starts, held until the test ends.

Binding port 0, reading the port back and closing the socket leaves a gap in which another
test (xdist runs several at once) can bind the same port. A held port stays bound without
listening (infra.local.processes.hold_port, which the testbed uses for its own ports too):
a server can still take it, a port 0 bind or a connect() elsewhere never gets it, and a
connection to it is refused until a server listens.
"""

from __future__ import annotations

import socket

from infra.local.processes import hold_port


def hold_consecutive(count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """Sockets holding `count` consecutive free ports on `host`, the lowest first: for a
    command that takes a port and the next ones (`local faults --lb-port P`: P, P+1, ...)."""
    while True:
        socks = [hold_port(host)]
        first = socks[0].getsockname()[1]
        try:
            socks += [hold_port(host, first + i) for i in range(1, count)]
            return socks
        except (OSError, OverflowError):  # one of the next ones is taken: try elsewhere
            for sock in socks:
                sock.close()

