"""Fixtures for the bench's own logic: a tiny in-process HTTP server whose behaviour a
test controls (healthy, failing, buggy), so that the bench's counting can be checked."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class FakeSeedApp:
    """GET / returns the seed; POST / with {"num": <int>} sets it. Knobs make it misbehave."""

    def __init__(self):
        self.seed = "0"
        self.down = False  # every request gets a 502, as from a dead upstream
        self.crash_on: bytes | None = None  # a body that gets a 500
        self.write_then_reject: bytes | None = None  # a body stored, then answered 400
        self.served_by = "fake-1"

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.handle(request)
        response.headers["X-Served-By"] = self.served_by
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        import json

        if self.down:
            return Response("bad gateway", status=502)
        if request.path != "/":
            return Response("no", status=404)
        if request.method == "GET":
            return Response(self.seed)
        if request.method != "POST":
            return Response("no", status=405)
        body = request.get_data()
        if self.crash_on is not None and body == self.crash_on:
            return Response("boom", status=500)
        if self.write_then_reject is not None and body == self.write_then_reject:
            self.seed = "666"
            return Response("rejected", status=400)
        try:
            num = json.loads(body)["num"]
        except Exception:
            return Response("bad", status=400)
        if type(num) is not int:
            return Response("bad", status=400)
        self.seed = str(num)
        return Response(self.seed)


@pytest.fixture
def fake_app():
    app = FakeSeedApp()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield app
    finally:
        server.shutdown()
        thread.join(timeout=5)
