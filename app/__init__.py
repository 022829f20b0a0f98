"""The seed web app: `GET /` returns the seed, `POST /` with {"num": <integer>} sets it.

`create_app(config)` is the Flask factory (`flask --app app run` finds it); `python -m app`
serves it with granian. Config keys: INSTANCE_ID (X-Served-By; default: the environment
variable, else the host name), SEED_FILE (default: the environment variable, else memory
only), SEED_MAP (the shared seed map, set by `python -m app`), MAX_CONTENT_LENGTH. See
docs/app.md.
"""

from __future__ import annotations

import logging
import os
import socket

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from .body import MAX_BODY, ServedBy, WholeBody, error_response, http_error_response
from .parsing import BadSeed, parse_form_field, parse_seed
from .seed_store import SeedStore, SeedStoreError

__all__ = ["create_app", "MAX_BODY", "from_environment"]
bp = Blueprint("seed", __name__)


def from_environment() -> dict:  # the one place the app reads its environment
    return {"INSTANCE_ID": os.environ.get("INSTANCE_ID") or socket.gethostname(),
            "SEED_FILE": os.environ.get("SEED_FILE") or None}


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(**from_environment(), SEED_MAP=None, MAX_CONTENT_LENGTH=MAX_BODY)
    if config:
        app.config.update(config)
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)  # start-up lines (seed restored, file corrupt)
    seed_file, shared = app.config["SEED_FILE"], app.config["SEED_MAP"]
    app.extensions["seed_store"] = (SeedStore.attach(shared, seed_file, app.logger) if shared
                                    else SeedStore.private(seed_file, app.logger))
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, http_error_response)
    app.wsgi_app = ServedBy(WholeBody(app.wsgi_app, app.config), str(app.config["INSTANCE_ID"]))
    return app


def _store() -> SeedStore:
    return current_app.extensions["seed_store"]


def _plain(text: str) -> Response:
    # Exactly the digits: no quotes, no newline, no b'...' (the FAQ's pitfalls).
    return Response(text, mimetype="text/plain")


@bp.get("/")
def get_seed():
    return _plain(_store().get_text())


@bp.post("/")
def set_seed():  # the body is whole and within its limit already (body.py)
    try:
        if request.mimetype == "multipart/form-data":  # curl -F num=100
            value = parse_form_field(request.form.getlist("num"))
        else:  # other bodies: from their bytes, whatever the Content-Type (docs/app.md)
            value = parse_seed(request.get_data())
    except BadSeed as err:
        return error_response(str(err), 400)
    try:
        return _plain(_store().set(value))
    except SeedStoreError as err:
        current_app.logger.error("POST / not stored: %s", err)
        return error_response(f"the seed could not be stored ({err}); it is unchanged", 503)


@bp.get("/health")
def health():
    problem = _store().check()
    return error_response(problem, 503) if problem else _plain("ok")
