"""Seed apps for the grader's tests: a correct one, and one per FAQ pitfall."""

from __future__ import annotations

import json

from flask import Flask, Response, jsonify, request

# -- seed apps, correct and broken ----------------------------------------------------------

def seed_app(name: str | None = None, *, get=None, post=None) -> Flask:
    """A seed app; `get(seed)` and `post(request)` replace the correct handlers."""
    app = Flask(f"seed-{name}")
    state = {"seed": 0}

    @app.route("/", methods=["GET", "POST"])
    def root():
        if request.method == "POST":
            if post is not None:
                result = post(request)
                if isinstance(result, Response | tuple):
                    return result
                state["seed"] = result
            else:
                state["seed"] = int(request.get_json(force=True)["num"])
            return "ok"
        if get is not None:
            return get(state["seed"])
        return str(state["seed"])

    if name is not None:
        @app.after_request
        def served_by(response):
            response.headers["X-Served-By"] = name
            return response

    return app


def correct(name=None):
    return seed_app(name)


def jsonify_app(name=None):  # the seed document says "in string format": jsonify(str(seed))
    return seed_app(name, get=lambda seed: jsonify(str(seed)))


def json_dumps_app(name=None):
    return seed_app(name, get=lambda seed: json.dumps(str(seed)))


def bytes_literal_app(name=None):  # FAQ 6: b'"1000"\n', str() of a response's bytes
    return seed_app(name, get=lambda seed: str(jsonify(str(seed)).get_data()))


def trailing_newline_app(name=None):
    return seed_app(name, get=lambda seed: f"{seed}\n")


def json_content_type_app(name=None):
    return seed_app(name, get=lambda seed: Response(str(seed), mimetype="application/json"))


def html_page_app(name=None):
    page = ("<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Internal "
            "error</h1><p>Something went wrong.</p></body></html>")
    return seed_app(name, get=lambda seed: page)


def form_reader_app(name=None):  # request.form["num"]: a JSON body makes it a 400
    return seed_app(name, post=lambda req: int(req.form["num"]))


def strict_json_app(name=None):  # get_json() without force: no Content-Type -> 415
    return seed_app(name, post=lambda req: int(req.get_json()["num"]))


def ignores_post_app(name=None):  # answers 200 and stores nothing
    return seed_app(name, post=lambda req: ("ok", 200))


def status_app(code: int, body: str = ""):
    app = Flask(f"status-{code}")

    @app.route("/", methods=["GET", "POST"])
    def root():
        return Response(body or f"<html><body><h1>{code}</h1></body></html>", status=code,
                        mimetype="text/html")

    return app
