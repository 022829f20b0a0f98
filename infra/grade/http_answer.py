"""One request's record (`Exchange`), and how an HTTP/1.1 answer is read into it, bounded.

The status line and each header line, the number and total size of the headers, the number
of interim (1xx) answers and the body (on the wire and after gzip/deflate) each have a
limit (`Limits`). A limit that is hit, or an answer that is not HTTP, is a ProbeError with
what was seen; nothing here raises on a server's answer otherwise.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from infra.grade.display import shown
from infra.grade.transport import ProbeError, TransportError, Wire

SERVED_BY = "X-Served-By"
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?:[ \t]([^\r\n]*))?\r?\n")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TLS_RECORD = (b"\x15\x03", b"\x16\x03")  # an alert or a handshake: TLS answered
_READ = 65536  # bytes asked of the socket at once


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


class _TooLong(Exception):
    pass


class _CutOff(Exception):
    pass


def _line(wire: Wire, limit: int) -> bytes | None:
    """One line with its newline; None at a clean end of stream before any byte."""
    start = 0
    while True:
        i = wire.buf.find(b"\n", start)
        if 0 <= i < limit:
            out = bytes(wire.buf[: i + 1])
            del wire.buf[: i + 1]
            return out
        if len(wire.buf) >= limit:
            raise _TooLong
        start = len(wire.buf)
        if not wire.fill():
            if wire.buf:
                raise _CutOff
            return None


def _take(wire: Wire, n: int) -> bytes:
    """Up to n bytes: what is buffered, else one recv's worth; b"" at end of stream."""
    if not wire.buf and not wire.fill():
        return b""
    out = bytes(wire.buf[:n])
    del wire.buf[:n]
    return out


class AnswerReader:
    """Reads one answer from `wire` into an Exchange, within `limits`."""

    def __init__(self, wire: Wire, limits: Limits = LIMITS):
        self.wire, self.limits = wire, limits

    def read(self, ex: Exchange) -> None:
        status, headers = self._final_head(ex)
        ex.status = status
        fields: dict[str, list[str]] = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)
        ex.content_type = shown(fields.get("content-type", [""])[-1], 120)
        served = fields.get(SERVED_BY.lower())
        ex.served_by = shown(served[-1], 60) if served else None
        ex.phase = "body"
        if status not in (204, 304) and ex.method != "HEAD":
            self._body(ex, fields)

    def _final_head(self, ex: Exchange) -> tuple[int, list[tuple[str, str]]]:
        """The status and headers of the final answer, after at most `interim` 1xx ones."""
        while True:
            ex.phase = "status line"
            line = self._status_line()
            status = int(_STATUS_LINE.fullmatch(line).group(3))
            ex.phase = "headers"
            headers = self._headers(len(line))
            if not (100 <= status < 200 and status != 101):
                return status, headers
            ex.interim += 1
            if ex.interim > self.limits.interim:
                raise ProbeError(TransportError.TOO_MANY_INTERIM, f"more than "
                                 f"{self.limits.interim} interim answers ({status} ...) and "
                                 "no final one")

    def _status_line(self) -> bytes:
        wire, limit = self.wire, self.limits.line
        try:
            line = _line(wire, limit)
        except (_TooLong, _CutOff):  # judged by what came: TLS, or not HTTP at all
            line = bytes(wire.buf[:limit])
            if line.startswith(b"HTTP/") and wire.eof:
                raise ProbeError(TransportError.CUT_OFF, "the connection closed in the middle "
                                 f"of the status line: {show_bytes(line)}") from None
        if line is None:
            raise ProbeError(TransportError.NO_RESPONSE, "the server closed the connection "
                             "without an HTTP answer" if wire.received == 0 else
                             "the connection closed before a status line")
        if line.startswith(_TLS_RECORD):
            raise ProbeError(TransportError.TLS_PORT, "the answer is a TLS record, not HTTP")
        if _STATUS_LINE.fullmatch(line) is None:
            raise ProbeError(TransportError.BAD_STATUS_LINE, "the first line is not an HTTP "
                             f"status line: {show_bytes(line)}")
        return line

    def _bounded_line(self, limit: int, what: str) -> bytes | None:
        try:
            return _line(self.wire, limit)
        except _TooLong:
            raise ProbeError(TransportError.HEADERS_TOO_LARGE, f"a {what} longer than "
                             f"{limit:,} bytes: {show_bytes(bytes(self.wire.buf[:60]))}") from None
        except _CutOff:
            raise ProbeError(TransportError.CUT_OFF, f"the connection closed in the middle of "
                             f"the {what}: {show_bytes(bytes(self.wire.buf[:60]))}") from None

    def _headers(self, used: int) -> list[tuple[str, str]]:
        limits = self.limits
        headers: list[tuple[str, str]] = []
        while True:
            line = self._bounded_line(limits.line, "header line")
            if line is None:
                raise ProbeError(TransportError.CUT_OFF,
                                 "the connection closed in the middle of the headers")
            used += len(line)
            if used > limits.header_bytes:
                raise ProbeError(TransportError.HEADERS_TOO_LARGE, f"the headers are larger "
                                 f"than {limits.header_bytes:,} bytes")
            text = line.rstrip(b"\r\n")
            if not text:
                return headers
            if text[:1] in (b" ", b"\t") and headers:  # obsolete line folding
                name, value = headers[-1]
                headers[-1] = (name, value + " " + text.strip().decode("latin-1"))
                continue
            name, sep, value = text.partition(b":")
            if not sep or not _HEADER_NAME.fullmatch(name):
                raise ProbeError(TransportError.BAD_HEADER,
                                 f"not a header line: {show_bytes(text)}")
            headers.append((name.decode("ascii"), value.strip().decode("latin-1")))
            if len(headers) > limits.header_count:
                raise ProbeError(TransportError.TOO_MANY_HEADERS,
                                 f"more than {limits.header_count} headers")

    def _body(self, ex: Exchange, fields: dict[str, list[str]]) -> None:
        encoding = (fields.get("content-encoding", ["identity"])[-1].strip().lower()
                    or "identity")
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise ProbeError(TransportError.BAD_ENCODING, f"Content-Encoding "
                             f"{shown(encoding, 40)}, which was not asked for (the grader "
                             "accepts gzip and deflate)")
        body = Body(encoding, self.limits.body)
        transfer = ",".join(fields.get("transfer-encoding", [])).lower()
        declared = None  # Transfer-Encoding wins over Content-Length (RFC 9112, 6.3)
        if transfer.strip():
            if transfer.replace(" ", "").split(",")[-1] == "chunked":
                self._chunked(body)
            else:
                self._until_close(body)
        elif (declared := _content_length(fields)) is not None:
            self._exact(body, declared)
        else:
            self._until_close(body)
        ex.truncated = body.truncated
        if body.truncated:
            ex.body_size = body.size(declared)
        ex.body = decode(bytes(body.out), ex.content_type)

    def _exact(self, body: Body, length: int) -> None:
        left = length
        while left > 0:
            data = _take(self.wire, min(left, _READ))
            if not data:
                raise ProbeError(TransportError.CUT_OFF, f"the body ended after "
                                 f"{length - left:,} of the {length:,} bytes its "
                                 "Content-Length announced")
            left -= len(data)
            if not body.add(data):
                return

    def _until_close(self, body: Body) -> None:
        while True:
            data = _take(self.wire, _READ)
            if not data or not body.add(data):
                return

    def _chunked(self, body: Body) -> None:
        while True:
            line = self._bounded_line(1024, "chunk size line")
            if line is None:
                raise ProbeError(TransportError.CUT_OFF,
                                 "the chunked body ended without its last chunk")
            size_text = line.split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
                raise ProbeError(TransportError.BAD_FRAMING,
                                 f"not a chunk size: {show_bytes(line)}")
            size = int(size_text, 16)
            if size == 0:
                self._headers(0)  # trailers, bounded like headers
                return
            if not self._chunk(body, size):
                return

    def _chunk(self, body: Body, size: int) -> bool:
        """One chunk's data and its line end; False once the body is at its cap."""
        left = size
        while left > 0:
            data = _take(self.wire, min(left, _READ))
            if not data:
                raise ProbeError(TransportError.CUT_OFF,
                                 "the connection closed in the middle of a chunk")
            left -= len(data)
            if not body.add(data):
                return False
        try:
            end = _line(self.wire, 16)
        except (_TooLong, _CutOff):
            end = None
        if end not in (b"\r\n", b"\n"):
            raise ProbeError(TransportError.BAD_FRAMING, "a chunk is longer than its size says")
        return True


def _content_length(fields: dict[str, list[str]]) -> int | None:
    lengths = {v.strip() for v in ",".join(fields.get("content-length", [])).split(",")
               if v.strip()}
    if not lengths:
        return None
    value = next(iter(lengths))
    if len(lengths) > 1 or not value.isdigit() or not value.isascii():
        raise ProbeError(TransportError.BAD_FRAMING, f"Content-Length is not one number: "
                         f"{shown(', '.join(sorted(lengths)), 60)}")
    return int(value[:20])


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
