"""The grader's sockets: a name looked up, a TCP connection opened, bytes read, each within a
deadline; and why a request got no usable answer, as a type.

Every wait is cut into short slices, so that a cancelled run (Ctrl-C in a roster run) stops
within one. Nothing here knows HTTP (http_answer.py) or what a failure means to a student
(pitfalls.py maps each TransportError to its finding).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import threading
import time
from enum import StrEnum

from infra.config import LOOPBACK_ONLY_ENV, is_loopback_host, loopback_only
from infra.grade.display import shown
from infra.grade.public import not_public

SLICE = 0.25  # longest single wait, so that a cancelled run stops within it


class TransportError(StrEnum):
    """Why an exchange got no usable HTTP answer. The value is the code a finding carries
    (pitfalls.TRANSPORT_FINDINGS has one for each member; a test keeps it so)."""

    # the address
    DNS = "dns"
    DNS_TIMEOUT = "dns-timeout"
    LOOPBACK_ONLY = "loopback-only"
    NOT_PUBLIC = "not-public"
    # the connection
    CONNECT_TIMEOUT = "connect-timeout"
    REFUSED = "refused"
    CONNECTION = "connection-error"  # an OS error other than those: unreachable, no route
    RESET = "reset"
    TLS_PORT = "tls-port"
    # time and count
    READ_TIMEOUT = "read-timeout"
    SLOW_RESPONSE = "slow-response"
    RUN_DEADLINE = "run-deadline"
    BUDGET = "budget"
    # the answer
    NO_RESPONSE = "no-response"
    CUT_OFF = "cut-off"
    BAD_STATUS_LINE = "bad-status-line"
    TOO_MANY_INTERIM = "too-many-interim"
    TOO_MANY_HEADERS = "too-many-headers"
    HEADERS_TOO_LARGE = "headers-too-large"
    BAD_HEADER = "bad-header"
    BAD_FRAMING = "bad-framing"
    BAD_ENCODING = "bad-encoding"


class ProbeError(Exception):
    """No usable answer: `code` says why, `detail` what was seen (escaped, cut)."""

    def __init__(self, code: TransportError, detail: str):
        super().__init__(code, detail)
        self.code, self.detail = code, detail


class Timeout(Exception):  # noqa: N818 - the request's deadline; the caller words it
    """The deadline passed; the caller knows which deadline and what was still arriving."""


class Stop(Exception):  # noqa: N818 - a signal to stop sending, not a failure
    """No more requests for this grade: `reason` says why."""

    reason = "stopped"


class BudgetExhausted(Stop):
    reason = "request budget used up"


class DeadlineReached(Stop):
    reason = "run deadline reached"


class Cancelled(Exception):  # noqa: N818
    """The run was cancelled from outside (Ctrl-C during a roster run)."""


class Deadline:
    """A point in time on the monotonic clock."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def resolve(host: str, port: int, seconds: float, public_only: bool = False) -> list[tuple]:
    """getaddrinfo(host, port) within `seconds` (it has no timeout of its own): a list of
    (family, sockaddr), or ProbeError(DNS | DNS_TIMEOUT | LOOPBACK_ONLY | NOT_PUBLIC).
    With `public_only`, every address must be public (public.py), or none is returned."""
    if public_only and is_ip(host) and not_public(host):  # no lookup needed to refuse it
        raise ProbeError(TransportError.NOT_PUBLIC, f"{host}, {not_public(host)}")
    found = _lookup(host, port, seconds)
    if public_only:
        for _, sockaddr in found:
            why = not_public(sockaddr[0])
            if why:
                named = "" if sockaddr[0] == host else f"{shown(host)} resolves to "
                raise ProbeError(TransportError.NOT_PUBLIC, f"{named}{sockaddr[0]}, {why}")
    return found


def _lookup(host: str, port: int, seconds: float) -> list[tuple]:
    if loopback_only() and not is_loopback_host(host):
        raise ProbeError(TransportError.LOOPBACK_ONLY, f"{LOOPBACK_ONLY_ENV}=1: only loopback "
                         f"addresses are graded, and {shown(host)} is not one")
    if is_ip(host):
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        return [(family, (host, port))]
    box: dict = {}

    def lookup():
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name=f"dns-{host[:40]}")
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        raise ProbeError(TransportError.DNS_TIMEOUT,
                         f"looking up {shown(host)} took more than {seconds:.1f} s")
    if "error" in box:
        raise ProbeError(TransportError.DNS,
                         f"{shown(host)} does not resolve ({shown(str(box['error']))})")
    found = [(info[0], info[4][:2]) for info in box["infos"]]
    if loopback_only() and not all(is_loopback_host(addr[0]) for _, addr in found):
        raise ProbeError(TransportError.LOOPBACK_ONLY, f"{LOOPBACK_ONLY_ENV}=1 and "
                         f"{shown(host)} resolves to a non-loopback address")
    return found


def connect(sock: socket.socket, sockaddr: tuple, end: float,
            cancel: threading.Event | None) -> None:
    """TCP connect by `end`, in short waits so that a cancelled run stops at once.
    Raises Timeout, Cancelled, or ProbeError(REFUSED | CONNECTION)."""
    sock.setblocking(False)
    err = sock.connect_ex(sockaddr)
    while err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        left = end - time.monotonic()
        if left <= 0:
            raise Timeout
        _, writable, _ = select.select([], [sock], [], min(left, SLICE))
        if writable:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err == errno.ECONNREFUSED:
        raise ProbeError(TransportError.REFUSED, "connection refused")
    if err:
        raise ProbeError(TransportError.CONNECTION, os.strerror(err))


def tcp_connect(family: int, sockaddr: tuple, seconds: float,
                cancel: threading.Event | None = None) -> float:
    """Open and close one TCP connection (the grader's check 1): the seconds it took, or
    ProbeError(CONNECT_TIMEOUT | REFUSED | CONNECTION)."""
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            connect(sock, sockaddr, started + seconds, cancel)
        except Timeout:
            raise ProbeError(TransportError.CONNECT_TIMEOUT,
                             f"TCP connect timed out after {seconds:g} s") from None
    return time.monotonic() - started


class Wire:
    """Reads from a connected socket under a deadline, into a buffer."""

    def __init__(self, sock: socket.socket, end: float, cancel: threading.Event | None):
        self.sock, self.end, self.cancel = sock, end, cancel
        self.buf = bytearray()
        self.received = 0
        self.eof = False

    def fill(self) -> bool:
        """One more recv into the buffer; False at end of stream. Raises Timeout at the
        deadline, ProbeError(RESET | CUT_OFF | CONNECTION) when the connection fails."""
        if self.eof:
            return False
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled
            left = self.end - time.monotonic()
            if left <= 0:
                raise Timeout
            self.sock.settimeout(min(left, SLICE))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                if self.received:
                    raise ProbeError(TransportError.CUT_OFF, "the connection was reset in the "
                                     "middle of the answer") from None
                raise ProbeError(TransportError.RESET, "the connection was reset") from None
            except OSError as exc:
                raise ProbeError(TransportError.CONNECTION, shown(str(exc), 120)) from None
            break
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += len(data)
        return True
