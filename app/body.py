"""WSGI middleware: the transport's rules, so that the views only parse."""
# A POST body is whole and within its limit, or gets its 400 or 413 here: docs/app.md,
# "What POST / accepts", says why.

from __future__ import annotations

import contextlib
import io
import json

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import LimitedStream

MAX_BODY = 64 * 1024  # a seed of 4300 digits in JSON is ~4.3 KB; 64 KiB is plenty
# Up to this much of an oversized body is read and dropped before its 413: else a client
# still sending gets a reset, and a server closes a connection it announced as keep-alive
# (an ALB would answer 502). `python -m app` leaves a larger one unread, and closes.
DRAIN = 16 * MAX_BODY
SERVED_BY = "X-Served-By"


def error_json(message: str) -> bytes:  # as Flask's jsonify writes it
    return json.dumps({"error": message}, separators=(",", ":")).encode() + b"\n"


def error_response(message: str, status: int) -> Response:
    return Response(error_json(message), status=status, mimetype="application/json")


def http_error_message(err: HTTPException) -> str:
    return f"{err.code} {err.name}: {err.description}"


def http_error_response(err: HTTPException) -> Response:
    # 400/404/405/413 as JSON too, keeping the exception's headers (405's Allow).
    response = err.get_response()
    response.set_data(error_json(http_error_message(err)))
    response.mimetype = "application/json"
    return response


def _too_large() -> Response:
    return http_error_response(RequestEntityTooLarge())


def _drain(stream, budget: int = DRAIN) -> None:
    with contextlib.suppress(Exception):  # a client that has gone
        while budget > 0 and (chunk := stream.read(min(budget, 65536))):
            budget -= len(chunk)


class WholeBody:
    # A POST body reaches the app whole, at most config["MAX_CONTENT_LENGTH"] bytes.

    def __init__(self, app, config):
        self.app, self.config = app, config

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            refusal = self._read(environ)
            if refusal is not None:
                return refusal(environ, start_response)
        return self.app(environ, start_response)

    def _read(self, environ) -> Response | None:
        request = Request(environ)
        request.max_content_length = limit = self.config["MAX_CONTENT_LENGTH"]
        length = request.content_length
        if limit is not None and length is not None and length > limit:
            _drain(LimitedStream(request.input_stream, length))
            return _too_large()
        try:
            raw = request.get_data()
        except Exception as err:  # the server's errors for a body it cannot decode: a 400
            raw, failure = None, type(err).__name__
        if length is not None and (raw is None or len(raw) < length):
            # gunicorn and granian's WSGI hand over what came before the client closed:
            # `num=12` of `num=12345` must not be taken.
            got = "" if raw is None else f" after {len(raw)}"
            return error_response(f"the body ended{got} before the {length} bytes its "
                                  "Content-Length announced; the seed is unchanged", 400)
        if raw is None:
            return error_response(f"the request body could not be read ({failure}); "
                                  'send JSON such as {"num": 100}', 400)
        if length is None and limit is not None and len(raw) >= limit:
            # A chunked body, cut at the limit by Werkzeug: refuse it, do not parse a part.
            _drain(request.input_stream)
            return _too_large()
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.update({"wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))})
        return None


class ServedBy:
    # X-Served-By on every answer, errors and 500s included.

    def __init__(self, app, instance_id: str):
        self.app, self.header = app, (SERVED_BY, instance_id)

    def __call__(self, environ, start_response):
        return self.app(environ, lambda status, headers, exc_info=None: start_response(
            status, [*headers, self.header], exc_info))
