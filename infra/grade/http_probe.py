"""One HTTP request to a load balancer or an instance, and what came back.

Bounded in every way the grader promises: connect and read timeouts, body size, and a
request budget shared by the whole run. Like the real grader's bare `requests.get()`, it
keeps no cookies.
"""

from __future__ import annotations

import http.cookiejar
import json
import socket
import threading
import time
from dataclasses import dataclass

import requests

from infra.grade.address import Endpoint
from infra.grade.pitfalls import lenient_value

MAX_BODY = 64 * 1024
SERVED_BY = "X-Served-By"


@dataclass
class Exchange:
    """One request and what came back (or why nothing did)."""

    method: str
    target: str  # "lb" or an instance's host:port
    style: str | None = None
    sent: int | None = None
    status: int | None = None
    body: str = ""
    content_type: str = ""
    served_by: str | None = None
    error: str | None = None  # connect-timeout, read-timeout, refused, reset, dns, ...
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def value(self) -> int | None:
        return lenient_value(self.body) if self.status == 200 else None


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request) -> bool:
        return False

    def return_ok(self, cookie, request) -> bool:
        return False


class BudgetExhausted(Exception):
    pass


class ProbeClient:
    """requests with bounded timeouts, a bounded body, and a request counter."""

    def __init__(self, timeout: float, budget: int):
        self.timeout = timeout
        self.budget = budget
        self.count = 0
        self._lock = threading.Lock()
        self.session = requests.Session()  # keep-alive: a load balancer routes per request
        # No cookies, like the grader's bare requests.get(): an ALB stickiness cookie sent
        # back would pin every request to one instance.
        self.session.cookies.set_policy(_NoCookies())

    def remaining(self) -> int:
        return self.budget - self.count

    def send(
        self, method: str, endpoint: Endpoint, target: str, style: str | None = None,
        num: int | None = None, session: requests.Session | None = None,
    ) -> Exchange:
        with self._lock:
            if self.count >= self.budget:
                raise BudgetExhausted
            self.count += 1
        kwargs: dict = {}
        if style == "json":
            kwargs["json"] = {"num": num}
        elif style == "data":  # a str body: requests sends no Content-Type at all
            kwargs["data"] = json.dumps({"num": num})
        elif style == "form":
            kwargs["data"] = {"num": str(num)}
        ex = Exchange(method, target, style, num)
        started = time.monotonic()
        try:
            resp = (session or self.session).request(
                method, endpoint.url, timeout=(self.timeout, self.timeout),
                allow_redirects=False, stream=True, **kwargs,
            )
            try:
                ex.status = resp.status_code
                ex.content_type = resp.headers.get("Content-Type", "")
                ex.served_by = resp.headers.get(SERVED_BY)
                raw = b""
                for chunk in resp.iter_content(8192):
                    raw += chunk
                    if len(raw) >= MAX_BODY:
                        break
                ex.body = raw.decode("utf-8", errors="replace")
            finally:
                resp.close()
        except requests.RequestException as exc:
            ex.status = None
            ex.error, ex.detail = transport_error(exc)
        ex.seconds = time.monotonic() - started
        return ex


def transport_error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect-timeout", "TCP connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "read-timeout", "connected, but no HTTP answer came in time"
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and isinstance(
            seen.args[0], BaseException) else None)
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text.lower():
        return "refused", "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or "resolve" in text.lower():
        return "dns", "name does not resolve"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "reset", "connection reset"
    if "RemoteDisconnected" in text or "without response" in text:
        return "no-response", "closed the connection without an HTTP answer"
    if isinstance(exc, requests.exceptions.ContentDecodingError
                  | requests.exceptions.ChunkedEncodingError):
        return "bad-response", "the answer was cut off or malformed"
    return "connection-error", str(exc)[:160]
