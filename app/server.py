"""What each granian worker of `python -m app` runs: the Flask app behind granian's RSGI.
A body is read whole, in the event loop and within a deadline, before the app runs: a slow
client holds a connection, never a Python thread (docs/app.md, "The server")."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import time

from . import create_app
from .body import DRAIN, SERVED_BY, error_json

_SPECIAL = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


class _Unreadable:
    """wsgi.input of a body that broke off: reading fails (as gunicorn's does)."""

    def __init__(self, error: Exception):
        self.error = error

    def read(self, *_):
        raise OSError(f"the body broke off ({self.error})")

    readinto = readline = read


class RSGIApp:
    """An RSGI application (granian calls `__rsgi__`) around a Flask app."""

    def __init__(self, app, body_timeout: float, log_requests: bool = True):
        self.wsgi = app.wsgi_app
        self.served_by = str(app.config["INSTANCE_ID"])
        self.body_timeout = body_timeout
        self.log_requests = log_requests

    async def __rsgi__(self, scope, protocol):
        body, error, extra = b"", None, []
        length = scope.headers.get("content-length")
        if length and length.isdigit() and int(length) > DRAIN:
            extra = [("Connection", "close")]  # left unread (body.py): the app answers 413
        elif length or "transfer-encoding" in scope.headers:
            try:  # whole: granian's chunk iterator hides a broken body
                body = await asyncio.wait_for(protocol(), self.body_timeout)
            except TimeoutError:
                data = error_json(f"408 Request Timeout: the body did not arrive within "
                                  f"{self.body_timeout:g} s")
                return self._reply(scope, protocol, 408, [
                    ("Content-Type", "application/json"), ("Connection", "close"),
                    (SERVED_BY, self.served_by)], data)
            except Exception as err:  # RSGIProtocolClosed: the client left mid-body
                error = err
        status, headers, data = self._call(self._environ(scope, body, error))
        self._reply(scope, protocol, status, headers + extra, data)

    def _environ(self, scope, body: bytes, error: Exception | None) -> dict:
        host, _, port = scope.server.rpartition(":")
        environ = {
            "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "",
            # PEP 3333: the (percent-decoded) path's bytes as latin-1
            "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
            "QUERY_STRING": scope.query_string, "SERVER_NAME": host.strip("[]"),
            "SERVER_PORT": port, "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
            "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.errors": sys.stderr,
            "wsgi.input": _Unreadable(error) if error else io.BytesIO(body),
            "wsgi.input_terminated": True, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        for name, value in scope.headers.items():
            if "_" not in name:  # X_A would pass for X-A (gunicorn drops it too)
                key = _SPECIAL.get(name) or "HTTP_" + name.upper().replace("-", "_")
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call(self, environ: dict) -> tuple[int, list, bytes]:
        started = []
        result = self.wsgi(environ, lambda status, headers, exc_info=None:
                           started.extend((int(status[:3]), headers)))
        try:
            return (*started[-2:], b"".join(result))
        finally:
            if hasattr(result, "close"):
                result.close()

    def _reply(self, scope, protocol, status: int, headers: list, data: bytes) -> None:
        try:
            protocol.response_bytes(status, headers, data)
        except Exception:  # noqa: S110 - the client has gone
            pass
        if self.log_requests:  # the combined log format
            get, query = scope.headers.get, scope.query_string
            line = (f'{scope.client.rpartition(":")[0].strip("[]")} - - '
                    f'[{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{scope.method} {scope.path}'
                    f'{"?" * bool(query)}{query} HTTP/{scope.http_version}" {status} '
                    f'{len(data) or "-"} "{get("referer", "-")}" "{get("user-agent", "-")}"')
            sys.stdout.write(line + "\n")  # not logging: 30 us a line
            sys.stdout.flush()


def load(config: dict, body_timeout: float, log_requests: bool) -> RSGIApp:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)  # a forked worker inherits the master's
    return RSGIApp(create_app(config), body_timeout, log_requests)
