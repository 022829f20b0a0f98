"""One HTTP request to a load balancer or an instance, and what came back.

A small HTTP/1.1 client on a plain socket. requests and urllib3 bound each socket read,
not a whole request, and http.client reads `100 Continue` answers for ever, so a server that
drips one byte a second, or sends interim answers without end, would hold the grader as
long as it likes. Here every dimension is bounded:

- time: a deadline for each request (connect, status line, headers and body together), and
  the run's deadline, shared by every request of one grade;
- size: the status line and each header line, the number and total size of the headers,
  the number of interim (1xx) answers, and the body, on the wire and after gzip/deflate;
- count: a request budget shared by the whole run.

A limit that is hit is an `Exchange.error` code with a `detail` that says what was seen
(the grader turns it into a finding); nothing here raises on a server's answer. Each
request opens its own connection and closes it, like the real grader's bare
`requests.get()`, with the headers requests sends; no cookies are kept.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import select
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass

from requests.utils import default_user_agent

from infra.grade.address import Endpoint
from infra.grade.display import shown
from infra.grade.pitfalls import lenient_value
from infra.grade.public import not_public

SERVED_BY = "X-Served-By"
# Set by the test suite and the local testbed: connect to and look up loopback only.
LOOPBACK_ONLY_ENV = "SEEDLB_LOOPBACK_ONLY"
_SLICE = 0.25  # longest single wait, so that a cancelled run stops within it


@dataclass(frozen=True)
class Limits:
    body: int = 64 * 1024  # bytes, on the wire and decoded: a seed is a few digits
    line: int = 8 * 1024  # one status or header line
    header_count: int = 100  # like http.client's own cap
    header_bytes: int = 32 * 1024  # the status line and headers of one answer
    interim: int = 10  # 1xx answers before the final one


LIMITS = Limits()


@dataclass
class Exchange:
    """One request and what came back (or why nothing usable did)."""

    method: str
    target: str  # "lb" or an instance's host:port
    style: str | None = None
    sent: int | None = None
    status: int | None = None
    body: str = ""
    content_type: str = ""
    served_by: str | None = None
    error: str | None = None  # a code: connect-timeout, refused, slow-response, ...
    detail: str = ""  # what was seen, already escaped and cut
    seconds: float = 0.0
    received: int = 0  # bytes read from the socket
    truncated: bool = False  # the body was longer than Limits.body (see body_size)
    body_size: str = ""  # "70,000 bytes", "more than 65,536 bytes", "... after gzip"
    interim: int = 0  # 1xx answers before the final one
    phase: str = ""  # where the answer stopped: connect, status line, headers, body

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def value(self) -> int | None:
        if self.error or self.truncated or self.status != 200:
            return None
        return lenient_value(self.body)


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


class ProbeError(Exception):
    """No usable answer: `code` names why (a finding's code), `detail` what was seen."""

    def __init__(self, code: str, detail: str):
        super().__init__(code, detail)
        self.code, self.detail = code, detail


def loopback_only() -> bool:
    return os.environ.get(LOOPBACK_ONLY_ENV) == "1"


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(host: str, port: int, seconds: float, public_only: bool = False) -> list[tuple]:
    """getaddrinfo(host, port) within `seconds` (it has no timeout of its own): a list of
    (family, sockaddr), or ProbeError("dns" | "dns-timeout" | "loopback-only" | "not-public").
    With `public_only`, every address must be public (public.py), or none is returned."""
    if public_only and _is_ip(host) and not_public(host):  # no lookup needed to refuse it
        raise ProbeError("not-public", f"{host}, {not_public(host)}")
    found = _lookup(host, port, seconds)
    if public_only:
        for _, sockaddr in found:
            why = not_public(sockaddr[0])
            if why:
                named = "" if sockaddr[0] == host else f"{shown(host)} resolves to "
                raise ProbeError("not-public", f"{named}{sockaddr[0]}, {why}")
    return found


def _lookup(host: str, port: int, seconds: float) -> list[tuple]:
    if loopback_only() and not is_loopback_name(host):
        raise ProbeError("loopback-only", f"{LOOPBACK_ONLY_ENV}=1: only loopback addresses "
                         f"are graded, and {shown(host)} is not one")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
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
        raise ProbeError("dns-timeout", f"looking up {shown(host)} took more than {seconds:.1f} s")
    if "error" in box:
        raise ProbeError("dns", f"{shown(host)} does not resolve ({shown(str(box['error']))})")
    found = [(info[0], info[4][:2]) for info in box["infos"]]
    if loopback_only() and not all(is_loopback_name(addr[0]) for _, addr in found):
        raise ProbeError("loopback-only", f"{LOOPBACK_ONLY_ENV}=1 and {shown(host)} resolves "
                         "to a non-loopback address")
    return found


def _connect(sock: socket.socket, sockaddr: tuple, end: float,
             cancel: threading.Event | None) -> None:
    """TCP connect by `end`, in short waits so that a cancelled run stops at once.
    Raises _Timeout, Cancelled, or ProbeError("refused" | "connect-error")."""
    sock.setblocking(False)
    err = sock.connect_ex(sockaddr)
    while err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        left = end - time.monotonic()
        if left <= 0:
            raise _Timeout
        _, writable, _ = select.select([], [sock], [], min(left, _SLICE))
        if writable:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err == errno.ECONNREFUSED:
        raise ProbeError("refused", "connection refused")
    if err:
        raise ProbeError("connect-error", os.strerror(err))


def tcp_connect(family: int, sockaddr: tuple, seconds: float,
                cancel: threading.Event | None = None) -> float:
    """Open and close one TCP connection (the grader's check 1): the seconds it took, or
    ProbeError("connect-timeout" | "refused" | "connect-error")."""
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            _connect(sock, sockaddr, started + seconds, cancel)
        except _Timeout:
            raise ProbeError("connect-timeout", f"TCP connect timed out after {seconds:g} s")\
                from None
    return time.monotonic() - started


_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?:[ \t]([^\r\n]*))?\r?\n")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TLS_RECORD = (b"\x15\x03", b"\x16\x03")  # an alert or a handshake: TLS answered


class _Wire:
    """Reads from a socket under a deadline, with a buffer: lines and byte runs."""

    def __init__(self, sock: socket.socket, end: float, cancel: threading.Event | None):
        self.sock, self.end, self.cancel = sock, end, cancel
        self.buf = bytearray()
        self.received = 0
        self.eof = False

    def fill(self) -> bool:
        """One more recv; False at end of stream. Raises _Timeout at the deadline."""
        if self.eof:
            return False
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled
            left = self.end - time.monotonic()
            if left <= 0:
                raise _Timeout
            self.sock.settimeout(min(left, _SLICE))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                if self.received:
                    raise ProbeError("cut-off", "the connection was reset in the middle of the "
                                     "answer") from None
                raise ProbeError("reset", "the connection was reset") from None
            except OSError as exc:
                raise ProbeError("connection-error", shown(str(exc), 120)) from None
            break
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += len(data)
        return True

    def line(self, limit: int) -> bytes | None:
        """One line with its newline; None at a clean end of stream before any byte."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if 0 <= i < limit:
                out = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return out
            if len(self.buf) >= limit:
                raise _TooLong
            start = len(self.buf)
            if not self.fill():
                if self.buf:
                    raise _CutOff
                return None

    def take(self, n: int) -> bytes:
        """Up to n bytes: what is buffered, else one recv's worth; b"" at end of stream."""
        if not self.buf and not self.fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class _Timeout(Exception):
    pass


class _TooLong(Exception):
    pass


class _CutOff(Exception):
    pass


class _Body:
    """Collects body bytes up to the cap, decoding gzip/deflate with a bounded output."""

    def __init__(self, encoding: str, cap: int):
        self.cap = cap
        self.raw = 0
        self.out = bytearray()
        self.truncated = False
        self.inflate = None
        if encoding in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.inflate = _Deflate()
        self.encoding = encoding

    def add(self, data: bytes) -> bool:
        """False once a cap is reached (stop reading)."""
        self.raw += len(data)
        chunk = data
        if self.inflate is not None:
            try:  # never more output than the cap (+1 to tell "exactly" from "more")
                chunk = self.inflate.decompress(data, self.cap + 1 - len(self.out))
            except zlib.error as exc:
                raise ProbeError("bad-encoding", f"the body is labelled Content-Encoding: "
                                 f"{self.encoding} but does not decode ({exc})") from None
        room = self.cap - len(self.out)
        self.out += chunk[:room]
        if len(chunk) > room or self.raw > self.cap:
            self.truncated = True
        return not self.truncated


class _Deflate:
    """Content-Encoding: deflate is zlib-wrapped by the RFC, raw in some servers: both."""

    def __init__(self):
        self.obj = zlib.decompressobj(zlib.MAX_WBITS)
        self.first = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self.first:
            self.first = False
            try:
                return self.obj.decompress(data, max_length)
            except zlib.error:
                self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self.obj.decompress(data, max_length)


class ProbeClient:
    """Sends requests within the budget, each under its own deadline and the run's."""

    def __init__(self, timeout: float, budget: int, deadline: Deadline | None = None,
                 cancel: threading.Event | None = None, limits: Limits = LIMITS,
                 public_only: bool = False):
        self.timeout = timeout
        self.public_only = public_only
        self.budget = budget
        self.deadline = deadline or Deadline(3600)
        self.cancel = cancel
        self.limits = limits
        self.count = 0
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, int], list[tuple] | ProbeError] = {}
        self.user_agent = default_user_agent()

    def remaining(self) -> int:
        return self.budget - self.count

    def _claim(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled
        with self._lock:
            if self.count >= self.budget:
                raise BudgetExhausted
            if self.deadline.remaining() <= 0.05:
                raise DeadlineReached
            self.count += 1

    def addresses(self, endpoint: Endpoint) -> list[tuple]:
        """The endpoint's addresses, looked up (and checked) once per grade: every connection
        goes to an address that was checked, whatever the name answers later."""
        key = (endpoint.host, endpoint.port)
        with self._lock:
            known = self._resolved.get(key)
        if known is None:
            seconds = min(self.timeout, max(0.0, self.deadline.remaining()))
            try:
                known = resolve(endpoint.host, endpoint.port, seconds, self.public_only)
            except ProbeError as exc:
                known = exc
            with self._lock:
                known = self._resolved.setdefault(key, known)
        if isinstance(known, ProbeError):
            raise ProbeError(known.code, known.detail)
        return known

    def send(self, method: str, endpoint: Endpoint, target: str, style: str | None = None,
             num: int | None = None) -> Exchange:
        self._claim()
        ex = Exchange(method, target, style, num)
        started = time.monotonic()
        end = min(started + self.timeout, self.deadline.end)
        cut_by_run = self.deadline.end < started + self.timeout
        try:
            self._exchange(ex, endpoint, self._request(method, endpoint, style, num), end)
        except ProbeError as failed:
            ex.error, ex.detail = failed.code, failed.detail
        except _Timeout:
            ex.error, ex.detail = self._timed_out(ex, cut_by_run)
        except OSError as exc:  # a socket that cannot even be made (no IPv6, no fds)
            ex.error, ex.detail = "connect-error", shown(str(exc), 120)
        ex.seconds = time.monotonic() - started
        return ex

    def _timed_out(self, ex: Exchange, cut_by_run: bool) -> tuple[str, str]:
        budget = f"{self.deadline.seconds:g} s run deadline" if cut_by_run else \
            f"{self.timeout:g} s request deadline"
        phase = ex.phase or "status line"
        if phase == "connect":
            return "connect-timeout", f"TCP connect did not complete within the {budget}"
        if cut_by_run:
            return "run-deadline", (f"the {budget} passed with the {phase} still arriving "
                                    f"({ex.received:,} bytes so far)")
        if ex.received == 0:
            return "read-timeout", f"connected, but no byte of an answer came within the {budget}"
        return "slow-response", (f"{ex.received:,} bytes in {self.timeout:g} s, the {phase} "
                                 "still arriving")

    def _request(self, method: str, endpoint: Endpoint, style: str | None,
                 num: int | None) -> bytes:
        # What requests sends: json= (application/json), data=str (no Content-Type at all),
        # or a form; its default headers, and a Host header without :80.
        body, ctype = b"", None
        if style == "json":
            body, ctype = json.dumps({"num": num}).encode(), "application/json"
        elif style == "data":
            body = json.dumps({"num": num}).encode()
        elif style == "form":
            body, ctype = f"num={num}".encode(), "application/x-www-form-urlencoded"
        lines = [f"{method} / HTTP/1.1", f"Host: {endpoint.netloc}",
                 f"User-Agent: {self.user_agent}", "Accept-Encoding: gzip, deflate",
                 "Accept: */*", "Connection: close"]
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _exchange(self, ex: Exchange, endpoint: Endpoint, request: bytes, end: float) -> None:
        addresses = self.addresses(endpoint)
        family, sockaddr = addresses[self.count % len(addresses)]
        ex.phase = "connect"
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            _connect(sock, sockaddr, end, self.cancel)
            ex.phase = "status line"
            try:
                sock.settimeout(max(0.001, end - time.monotonic()))
                sock.sendall(request)
            except TimeoutError:
                raise _Timeout from None
            except OSError:
                pass  # it may have answered (and closed) before reading everything: read on
            wire = _Wire(sock, end, self.cancel)
            try:
                self._read_answer(ex, wire)
            finally:
                ex.received = wire.received

    def _read_answer(self, ex: Exchange, wire: _Wire) -> None:
        limits = self.limits
        while True:
            ex.phase = "status line"
            try:
                line = wire.line(limits.line)
            except (_TooLong, _CutOff):  # judged by what came: TLS, or not HTTP at all
                line = bytes(wire.buf[:limits.line])
                if line.startswith(b"HTTP/") and wire.eof:
                    raise ProbeError("cut-off", "the connection closed in the middle of the "
                                     f"status line: {_show_bytes(line)}") from None
            if line is None:
                raise ProbeError("no-response", "the server closed the connection without an "
                                 "HTTP answer" if wire.received == 0 else
                              "the connection closed before a status line")
            if line.startswith(_TLS_RECORD):
                raise ProbeError("tls-port", "the answer is a TLS record, not HTTP")
            match = _STATUS_LINE.fullmatch(line)
            if match is None:
                raise ProbeError("bad-status-line", f"the first line is not an HTTP status line: "
                                 f"{_show_bytes(line)}")
            status = int(match.group(3))
            ex.phase = "headers"
            headers = self._headers(wire, len(line))
            if 100 <= status < 200 and status != 101:
                ex.interim += 1
                if ex.interim > limits.interim:
                    raise ProbeError("too-many-interim", f"more than {limits.interim} interim "
                                     f"answers ({status} ...) and no final one")
                continue
            break
        ex.status = status
        fields = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)
        ex.content_type = shown(fields.get("content-type", [""])[-1], 120)
        served = fields.get(SERVED_BY.lower())
        ex.served_by = shown(served[-1], 60) if served else None
        self._read_body(ex, wire, fields)

    def _line(self, wire: _Wire, limit: int, what: str) -> bytes | None:
        try:
            return wire.line(limit)
        except _TooLong:
            raise ProbeError("headers-too-large", f"a {what} longer than {limit:,} bytes: "
                             f"{_show_bytes(bytes(wire.buf[:60]))}") from None
        except _CutOff:
            raise ProbeError("cut-off", f"the connection closed in the middle of the {what}: "
                             f"{_show_bytes(bytes(wire.buf[:60]))}") from None

    def _headers(self, wire: _Wire, used: int) -> list[tuple[str, str]]:
        limits = self.limits
        headers: list[tuple[str, str]] = []
        while True:
            line = self._line(wire, limits.line, "header line")
            if line is None:
                raise ProbeError("cut-off", "the connection closed in the middle of the headers")
            used += len(line)
            if used > limits.header_bytes:
                raise ProbeError("headers-too-large", f"the headers are larger than "
                                 f"{limits.header_bytes:,} bytes")
            text = line.rstrip(b"\r\n")
            if not text:
                return headers
            if text[:1] in (b" ", b"\t") and headers:  # obsolete line folding
                name, value = headers[-1]
                headers[-1] = (name, value + " " + text.strip().decode("latin-1"))
                continue
            name, sep, value = text.partition(b":")
            if not sep or not _HEADER_NAME.fullmatch(name):
                raise ProbeError("bad-header", f"not a header line: {_show_bytes(text)}")
            headers.append((name.decode("ascii"), value.strip().decode("latin-1")))
            if len(headers) > limits.header_count:
                raise ProbeError("too-many-headers", f"more than {limits.header_count} headers")

    def _read_body(self, ex: Exchange, wire: _Wire, fields: dict[str, list[str]]) -> None:
        ex.phase = "body"
        if ex.status in (204, 304) or ex.method == "HEAD":
            return
        encoding = (fields.get("content-encoding", ["identity"])[-1].strip().lower()
                    or "identity")
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise ProbeError("bad-encoding", f"Content-Encoding {shown(encoding, 40)}, which "
                             "was not asked for (the grader accepts gzip and deflate)")
        body = _Body(encoding, self.limits.body)
        transfer = ",".join(fields.get("transfer-encoding", [])).lower()
        lengths = {v.strip() for v in ",".join(fields.get("content-length", [])).split(",")
                   if v.strip()}
        declared = None
        if transfer.strip():
            if transfer.replace(" ", "").split(",")[-1] == "chunked":
                self._chunked(wire, body)
            else:
                self._until_close(wire, body)
        elif lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit() or \
                    not next(iter(lengths)).isascii():
                raise ProbeError("bad-framing", f"Content-Length is not one number: "
                                 f"{shown(', '.join(sorted(lengths)), 60)}")
            declared = int(next(iter(lengths))[:20])
            self._exact(wire, body, declared)
        else:
            self._until_close(wire, body)
        ex.truncated = body.truncated
        if body.truncated:
            cap = f"more than {self.limits.body:,} bytes"
            if encoding == "identity":
                ex.body_size = f"{declared:,} bytes" if declared else cap
            elif body.raw > self.limits.body:
                ex.body_size = f"{cap} of {encoding} data"
            else:
                ex.body_size = f"{cap} after {encoding} decoding, from {body.raw:,}"
        ex.body = _decode(bytes(body.out), ex.content_type)

    def _exact(self, wire: _Wire, body: _Body, length: int) -> None:
        left = length
        while left > 0:
            data = wire.take(min(left, 65536))
            if not data:
                raise ProbeError("cut-off", f"the body ended after {length - left:,} of the "
                                 f"{length:,} bytes its Content-Length announced")
            left -= len(data)
            if not body.add(data):
                return

    def _until_close(self, wire: _Wire, body: _Body) -> None:
        while True:
            data = wire.take(65536)
            if not data or not body.add(data):
                return

    def _chunked(self, wire: _Wire, body: _Body) -> None:
        while True:
            line = self._line(wire, 1024, "chunk size line")
            if line is None:
                raise ProbeError("cut-off", "the chunked body ended without its last chunk")
            size_text = line.split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
                raise ProbeError("bad-framing", f"not a chunk size: {_show_bytes(line)}")
            size = int(size_text, 16)
            if size == 0:
                self._headers(wire, 0)  # trailers, bounded like headers
                return
            left = size
            while left > 0:
                data = wire.take(min(left, 65536))
                if not data:
                    raise ProbeError("cut-off", "the connection closed in the middle of a chunk")
                left -= len(data)
                if not body.add(data):
                    return
            try:
                end = wire.line(16)
            except (_TooLong, _CutOff):
                end = None
            if end not in (b"\r\n", b"\n"):
                raise ProbeError("bad-framing", "a chunk is longer than its size says")

    def speaks_tls(self, endpoint: Endpoint) -> bool:
        """Whether the port completes a TLS handshake (one request from the budget)."""
        try:
            self._claim()
        except Stop:
            return False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only asking whether it speaks TLS at all
        seconds = max(0.05, min(self.timeout, self.deadline.remaining()))
        try:
            family, sockaddr = self.addresses(endpoint)[0]
            with socket.socket(family, socket.SOCK_STREAM) as raw:
                _connect(raw, sockaddr, time.monotonic() + seconds, self.cancel)
                raw.settimeout(seconds)
                server_name = None if _is_ip(endpoint.host) else endpoint.host
                with context.wrap_socket(raw, server_hostname=server_name):
                    return True
        except ssl.SSLError as exc:
            return "alert" in str(exc).lower()  # a TLS alert is TLS too
        except (OSError, ProbeError, ValueError, _Timeout):
            return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _show_bytes(data: bytes, limit: int = 60) -> str:
    return "`" + shown(data.decode("latin-1"), limit) + "`"


def _decode(data: bytes, content_type: str) -> str:
    match = re.search(r"charset=\"?([A-Za-z0-9_.:-]+)", content_type or "")
    if match:
        try:
            return data.decode(match.group(1), errors="replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass  # not a text encoding (rot13, idna's strictness): read it as UTF-8
    return data.decode("utf-8", errors="replace")
