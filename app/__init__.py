"""The seed web app: `GET /` returns the seed, `POST /` with {"num": <integer>} sets it.

`create_app(config)` is the Flask factory (`flask --app app run` finds it); `python -m app`
serves it with granian. Config keys, each defaulting to the environment variable of that
name: INSTANCE_ID (X-Served-By; default: host name), SEED_FILE (default: memory only),
SEED_MAP (the shared seed map, set by `python -m app`), MAX_CONTENT_LENGTH. See docs/app.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from .parsing import BadSeed, parse_form_field, parse_seed
from .seed_store import SeedStore, SeedStoreError

MAX_BODY = 64 * 1024  # a seed of 4300 digits in JSON is ~4.3 KB; 64 KiB is plenty

__all__ = ["create_app", "MAX_BODY"]


def _plain(text: str, status: int = 200) -> Response:
    # Exactly the digits: no quotes, no newline, no b'...' (the FAQ's pitfalls).
    return Response(text, status=status, mimetype="text/plain")


def _error(message: str, status: int) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _drain(stream, budget: int = 16 * MAX_BODY) -> None:
    # Read (up to 1 MiB of) the body before a 413: else a client still sending gets a reset,
    # and gunicorn closes a connection it announced as keep-alive (an ALB would answer 502).
    with contextlib.suppress(Exception):  # a client that has gone
        while budget > 0 and (chunk := stream.read(min(budget, 65536))):
            budget -= len(chunk)


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        INSTANCE_ID=os.environ.get("INSTANCE_ID") or socket.gethostname(),
        SEED_FILE=os.environ.get("SEED_FILE") or None,
        SEED_MAP=None,
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    if config:
        app.config.update(config)
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)  # start-up lines (seed restored, file corrupt)

    store = SeedStore(app.config["SEED_FILE"], logger=app.logger, shared=app.config["SEED_MAP"])
    app.extensions["seed_store"] = store
    served_by = str(app.config["INSTANCE_ID"])

    @app.get("/")
    def get_seed():
        return _plain(store.get_text())

    @app.post("/")
    def set_seed():
        limit = app.config["MAX_CONTENT_LENGTH"]
        length = request.content_length
        if limit is not None and length is not None and length > limit:
            _drain(LimitedStream(request.input_stream, length))
            raise RequestEntityTooLarge()
        try:
            raw = request.get_data()  # cached: request.form parses a multipart body from it
        except Exception as err:
            # The server's errors for a body it cannot decode: a 400, not a 500.
            raw, failure = None, type(err).__name__
        if length is not None and (raw is None or len(raw) < length):
            # gunicorn and granian's WSGI hand over what came before the client closed:
            # `num=12` of `num=12345` must not be taken.
            got = "" if raw is None else f" after {len(raw)}"
            return _error(f"the body ended{got} before the {length} bytes its Content-Length "
                          "announced; the seed is unchanged", 400)
        if raw is None:
            return _error(f"the request body could not be read ({failure}); "
                          'send JSON such as {"num": 100}', 400)
        if length is None and limit is not None and len(raw) >= limit:
            # A chunked body, cut at the limit by Werkzeug: refuse it, do not parse a part.
            _drain(request.input_stream)
            raise RequestEntityTooLarge()
        if request.mimetype == "multipart/form-data":  # curl -F num=100
            try:
                return _store(parse_form_field(request.form.getlist("num")))
            except BadSeed as err:
                return _error(str(err), 400)
        # Other bodies: from their bytes, whatever the Content-Type (docs/app.md).
        try:
            value = parse_seed(raw)
        except BadSeed as err:
            return _error(str(err), 400)
        return _store(value)

    def _store(value: int) -> Response:
        try:
            return _plain(store.set(value))
        except SeedStoreError as err:
            app.logger.error("POST / not stored: %s", err)
            return _error(f"the seed could not be stored ({err}); it is unchanged", 503)

    @app.get("/health")
    def health():
        problem = store.check()
        if problem:
            return _error(problem, 503)
        return _plain("ok")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        # 400/404/405/413 as JSON too, keeping the exception's headers (405's Allow).
        response = err.get_response()
        response.set_data(jsonify(error=f"{err.code} {err.name}: {err.description}").get_data())
        response.mimetype = "application/json"
        return response

    @app.after_request
    def served_by_header(response: Response):
        # after_request also runs for error responses, 500s included.
        response.headers["X-Served-By"] = served_by
        return response

    return app
