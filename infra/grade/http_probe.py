"""One HTTP request to a load balancer or an instance, and what came back.

A small HTTP/1.1 client on a plain socket. requests and urllib3 bound each socket read,
not a whole request, and http.client reads `100 Continue` answers for ever, so a server that
drips one byte a second, or sends interim answers without end, would hold the grader as
long as it likes. Here every dimension is bounded:

- time: a deadline for each request (connect, status line, headers and body together), and
  the run's deadline, shared by every request of one grade (transport.py);
- size: the status line and each header line, the number and total size of the headers,
  the number of interim (1xx) answers, and the body, on the wire and after gzip/deflate
  (http_answer.py);
- count: a request budget shared by the whole run (here).

A limit that is hit is an `Exchange.error` (a TransportError) with a `detail` that says what
was seen (pitfalls.py turns it into a finding); nothing here raises on a server's answer.
Each request opens its own connection and closes it, like the real grader's bare
`requests.get()`, with the headers requests sends; no cookies are kept.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from enum import StrEnum

from requests.utils import default_user_agent

from infra.grade.address import Endpoint
from infra.grade.display import shown
from infra.grade.http_answer import LIMITS, AnswerReader, Exchange, Limits
from infra.grade.transport import (
    BudgetExhausted,
    Cancelled,
    Deadline,
    DeadlineReached,
    ProbeError,
    Stop,
    Timeout,
    TransportError,
    Wire,
    connect,
    is_ip,
    resolve,
)


class Style(StrEnum):
    """How a POST carries {"num": N}: the ways requests sends it."""

    JSON = "json"  # json={"num": N}: application/json
    DATA = "data"  # data=json.dumps({"num": N}): no Content-Type at all
    FORM = "form"  # data={"num": N}: form-encoded


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

    def send(self, method: str, endpoint: Endpoint, target: str, style: Style | None = None,
             num: int | None = None) -> Exchange:
        """One request: an Exchange, whatever happened. Raises Stop (no budget or time left
        for it) or Cancelled before sending; never on what the server does."""
        self._claim()
        ex = Exchange(method, target, style, num)
        started = time.monotonic()
        end = min(started + self.timeout, self.deadline.end)
        cut_by_run = self.deadline.end < started + self.timeout
        try:
            self._exchange(ex, endpoint, self._request(method, endpoint, style, num), end)
        except ProbeError as failed:
            ex.fail(failed.code, failed.detail)
        except Timeout:
            ex.fail(*self._timed_out(ex, cut_by_run))
        except OSError as exc:  # a socket that cannot even be made (no IPv6, no fds)
            ex.fail(TransportError.CONNECTION, shown(str(exc), 120))
        ex.seconds = time.monotonic() - started
        return ex

    def _timed_out(self, ex: Exchange, cut_by_run: bool) -> tuple[TransportError, str]:
        budget = f"{self.deadline.seconds:g} s run deadline" if cut_by_run else \
            f"{self.timeout:g} s request deadline"
        phase = ex.phase or "status line"
        if phase == "connect":
            return (TransportError.CONNECT_TIMEOUT,
                    f"TCP connect did not complete within the {budget}")
        if cut_by_run:
            return TransportError.RUN_DEADLINE, (f"the {budget} passed with the {phase} still "
                                                 f"arriving ({ex.received:,} bytes so far)")
        if ex.received == 0:
            return (TransportError.READ_TIMEOUT,
                    f"connected, but no byte of an answer came within the {budget}")
        return TransportError.SLOW_RESPONSE, (f"{ex.received:,} bytes in {self.timeout:g} s, "
                                              f"the {phase} still arriving")

    def _request(self, method: str, endpoint: Endpoint, style: Style | None,
                 num: int | None) -> bytes:
        # What requests sends, with its default headers and a Host header without :80.
        body, ctype = b"", None
        if style == Style.JSON:
            body, ctype = json.dumps({"num": num}).encode(), "application/json"
        elif style == Style.DATA:
            body = json.dumps({"num": num}).encode()
        elif style == Style.FORM:
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
            connect(sock, sockaddr, end, self.cancel)
            ex.phase = "status line"
            try:
                sock.settimeout(max(0.001, end - time.monotonic()))
                sock.sendall(request)
            except TimeoutError:
                raise Timeout from None
            except OSError:
                pass  # it may have answered (and closed) before reading everything: read on
            wire = Wire(sock, end, self.cancel)
            try:
                AnswerReader(wire, self.limits).read(ex)
            finally:
                ex.received = wire.received

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
                connect(raw, sockaddr, time.monotonic() + seconds, self.cancel)
                raw.settimeout(seconds)
                server_name = None if is_ip(endpoint.host) else endpoint.host
                with context.wrap_socket(raw, server_hostname=server_name):
                    return True
        except ssl.SSLError as exc:
            return "alert" in str(exc).lower()  # a TLS alert is TLS too
        except (OSError, ProbeError, ValueError, Timeout):
            return False
