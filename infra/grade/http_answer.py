"""One request's record (`Exchange`), and how an HTTP/1.1 answer is read into it, bounded.

h11 parses the answer (status line, headers, Content-Length and chunked framing): it is
sans-I/O, so the socket, every read and every deadline stay with the caller (transport.py).
The status line and each header line, the number and total size of the headers, the number
of interim (1xx) answers and the body (on the wire and after gzip/deflate) each have a
limit (`Limits`). A limit that is hit, or an answer that is not HTTP, is a ProbeError with
what was seen; nothing here raises on a server's answer otherwise.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import h11

from infra.grade.display import shown
from infra.grade.transport import ProbeError, TransportError, Wire

SERVED_BY = "X-Served-By"
# What a status line looks like, to name an answer h11 refuses (it says why in words only).
_STATUS_LINE = re.compile(rb"HTTP/\d\.\d ([0-9]{3})(?:[ \t][^\r\n]*)?\r?\n")
_TLS_RECORD = (b"\x15\x03", b"\x16\x03")  # an alert or a handshake: TLS answered
_SHOWN = 200  # bytes of the answer's start kept to show what came


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
    error: TransportError | None = None
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

    def fail(self, error: TransportError, detail: str) -> None:
        self.error, self.detail = error, detail


class AnswerReader:
    """Reads one answer from `wire` into an Exchange, within `limits`."""

    def __init__(self, wire: Wire, limits: Limits = LIMITS):
        self.wire, self.limits = wire, limits
        self.start = b""  # the answer's first bytes, to show what came
        # h11 is told of the request only to know its method (a HEAD's answer has no body).
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=limits.header_bytes)

    def read(self, ex: Exchange) -> None:
        self.h11.send(h11.Request(method=ex.method, target="/", headers=[("Host", "grader")]))
        self.h11.send(h11.EndOfMessage())
        ex.phase = "status line"
        while isinstance(event := self._next(ex), h11.InformationalResponse):
            self._check_head(event)
            ex.interim += 1
            if ex.interim > self.limits.interim:
                raise ProbeError(TransportError.TOO_MANY_INTERIM, f"more than "
                                 f"{self.limits.interim} interim answers "
                                 f"({event.status_code} ...) and no final one")
            ex.phase = "status line"
        if isinstance(event, _Switching):
            ex.status = 101  # not an answer the grader wants: its status says so
            return
        self._check_head(event)
        fields: dict[str, list[str]] = {}
        for name, value in event.headers:
            fields.setdefault(name.decode("ascii"), []).append(value.decode("latin-1"))
        ex.status = event.status_code
        ex.content_type = shown(fields.get("content-type", [""])[-1], 120)
        served = fields.get(SERVED_BY.lower())
        ex.served_by = shown(served[-1], 60) if served else None
        ex.phase = "body"
        self._body(ex, fields)

    def _body(self, ex: Exchange, fields: dict[str, list[str]]) -> None:
        encoding = (fields.get("content-encoding", ["identity"])[-1].strip().lower()
                    or "identity")
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise ProbeError(TransportError.BAD_ENCODING, f"Content-Encoding "
                             f"{shown(encoding, 40)}, which was not asked for (the grader "
                             "accepts gzip and deflate)")
        body = Body(encoding, self.limits.body)
        while isinstance(event := self._next(ex), h11.Data) and body.add(bytes(event.data)):
            pass  # until the end of the message, or the cap
        ex.truncated = body.truncated
        if body.truncated:
            length = fields.get("content-length") if "transfer-encoding" not in fields else None
            ex.body_size = body.size(int(length[-1]) if length else None)
        ex.body = decode(bytes(body.out), ex.content_type)

    def _check_head(self, event) -> None:
        """The limits h11 does not keep: each line's size, the number of headers, and the
        whole head's size (h11 bounds it only while it is incomplete)."""
        limits = self.limits
        if len(event.headers) > limits.header_count:
            raise ProbeError(TransportError.TOO_MANY_HEADERS,
                             f"more than {limits.header_count} headers")
        size = len(b"HTTP/1.1 200 \r\n\r\n") + len(event.reason)
        for name, value in event.headers.raw_items():
            line = len(name) + len(value) + len(b": \r\n")
            if line > limits.line:
                raise ProbeError(TransportError.HEADERS_TOO_LARGE, f"a header line longer than "
                                 f"{limits.line:,} bytes: {show_bytes(name + b': ' + value)}")
            size += line
        if size > limits.header_bytes:
            raise ProbeError(TransportError.HEADERS_TOO_LARGE,
                             f"the headers are larger than {limits.header_bytes:,} bytes")

    def _next(self, ex: Exchange):
        """h11's next event, reading from the wire as it needs."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = _STATUS_LINE.match(self.start)
                if ex.phase != "body" and status and status.group(1) == b"101":
                    return _Switching()  # h11 has no use for a 101 nobody asked for
                raise self._refused(str(exc), ex) from None
            if event is not h11.NEED_DATA:
                return event
            if not self.wire.fill():
                self.h11.receive_data(b"")  # the end of the stream: h11 says what it means
                continue
            data = bytes(self.wire.buf)
            self.wire.buf.clear()
            if len(self.start) < _SHOWN:
                self.start += data[:_SHOWN]
                if self.start.startswith(_TLS_RECORD):
                    raise ProbeError(TransportError.TLS_PORT,
                                     "the answer is a TLS record, not HTTP")
            if ex.phase == "status line" and b"\n" in data:
                ex.phase = "headers"  # for a timeout's words: h11 shows nothing before the end
            self.h11.receive_data(data)

    def _refused(self, why: str, ex: Exchange) -> ProbeError:
        """What h11's refusal means, in the grader's codes."""
        first = self.start.split(b"\n", 1)[0] + (b"\n" if b"\n" in self.start else b"")
        if ex.phase == "body":
            code = TransportError.CUT_OFF if "closed" in why else TransportError.BAD_FRAMING
            return ProbeError(code, f"the body: {shown(why, 120)}")
        if not self.start:
            return ProbeError(TransportError.NO_RESPONSE, "the server closed the connection "
                              "without an HTTP answer")
        if not _STATUS_LINE.fullmatch(first) or "status line" in why:
            if first.startswith(b"HTTP/") and self.wire.eof and b"\n" not in first:
                return ProbeError(TransportError.CUT_OFF, "the connection closed in the "
                                  f"middle of the status line: {show_bytes(first)}")
            return ProbeError(TransportError.BAD_STATUS_LINE, "the first line is not an HTTP "
                              f"status line: {show_bytes(first)}")
        if "too long" in why:
            return ProbeError(TransportError.HEADERS_TOO_LARGE,
                              f"the headers are larger than {self.limits.header_bytes:,} bytes")
        if "Content-Length" in why or "Transfer-Encoding" in why:
            return ProbeError(TransportError.BAD_FRAMING, shown(why, 120))
        if "closed" in why:
            return ProbeError(TransportError.CUT_OFF,
                              "the connection closed in the middle of the headers")
        return ProbeError(TransportError.BAD_HEADER, shown(why, 120))


class _Switching:
    """A 101 answer, which h11 refuses when nobody asked to switch protocols."""


class Body:
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
                raise ProbeError(TransportError.BAD_ENCODING, f"the body is labelled "
                                 f"Content-Encoding: {self.encoding} but does not decode "
                                 f"({exc})") from None
        room = self.cap - len(self.out)
        self.out += chunk[:room]
        if len(chunk) > room or self.raw > self.cap:
            self.truncated = True
        return not self.truncated

    def size(self, declared: int | None) -> str:
        """How large a truncated body was, as far as it is known."""
        cap = f"more than {self.cap:,} bytes"
        if self.encoding == "identity":
            return f"{declared:,} bytes" if declared else cap
        if self.raw > self.cap:
            return f"{cap} of {self.encoding} data"
        return f"{cap} after {self.encoding} decoding, from {self.raw:,}"


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


def show_bytes(data: bytes, limit: int = 60) -> str:
    return "`" + shown(data.decode("latin-1"), limit) + "`"


def decode(data: bytes, content_type: str) -> str:
    match = re.search(r"charset=\"?([A-Za-z0-9_.:-]+)", content_type or "")
    if match:
        try:
            return data.decode(match.group(1), errors="replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass  # not a text encoding (rot13, idna's strictness): read it as UTF-8
    return data.decode("utf-8", errors="replace")
