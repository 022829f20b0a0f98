"""The seed web app: `GET /` returns the seed, `POST /` with {"num": <integer>} sets it.

`create_app(config)` is the Flask factory; `flask --app app run` finds it for development,
and `python -m app` serves it with gunicorn (see __main__.py). Configuration keys (each
defaults to the environment variable of the same name):

- INSTANCE_ID: sent in the `X-Served-By` header of every response (default: the host name).
  On EC2 the user data reads it from instance metadata; the app never calls the metadata
  service itself.
- SEED_FILE: a path that keeps the seed across restarts (default: in memory only).
- MAX_CONTENT_LENGTH: bodies larger than this get 413 (default 64 KiB).
"""

from __future__ import annotations

import logging
import os
import socket

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .parsing import BadSeed, parse_seed
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


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        INSTANCE_ID=os.environ.get("INSTANCE_ID") or socket.gethostname(),
        SEED_FILE=os.environ.get("SEED_FILE") or None,
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    if config:
        app.config.update(config)
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)  # start-up lines (seed restored, file corrupt)

    store = SeedStore(app.config["SEED_FILE"], logger=app.logger)
    app.extensions["seed_store"] = store
    served_by = str(app.config["INSTANCE_ID"])

    @app.get("/")
    def get_seed():
        return _plain(store.get_text())

    @app.post("/")
    def set_seed():
        # Read the raw bytes whatever the Content-Type says (request.form is never touched,
        # so a form content type cannot swallow the JSON). Over MAX_CONTENT_LENGTH -> 413.
        raw = request.get_data(cache=False)
        try:
            value = parse_seed(raw)
        except BadSeed as err:
            return _error(str(err), 400)
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
