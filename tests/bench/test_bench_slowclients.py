"""The slow-client probe counts what it should: against a server that copes, and one that
a few slow connections stop (a single-threaded one)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from infra.bench.slowclients import KINDS, run_slow_clients


def test_a_threaded_server_keeps_serving(fake_app):
    # werkzeug's threaded server gives every connection a thread: the GETs get through.
    result = run_slow_clients(fake_app.base_url + "/", connections=30, window_s=1.5)
    assert result.slow_connections == 30 and result.refused == 0
    assert result.attempts >= 5 and result.share == 1.0
    assert result.failures == {}
    assert result.percentile(99) is not None and result.served_after == 20


class _Seed(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"0")

    def log_message(self, *args):
        pass


@pytest.fixture
def single_threaded_url():
    server = HTTPServer(("127.0.0.1", 0), _Seed)  # one request at a time, no timeout
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_slow_clients_stop_is_counted_as_starved(single_threaded_url):
    # The first slow connection (an idle one) holds the only thread: every GET times out.
    result = run_slow_clients(single_threaded_url, connections=len(KINDS), window_s=2.5,
                              timeout_s=0.5)
    assert result.attempts >= 2
    assert result.served == 0 and result.share == 0.0
    assert result.failures.get("timeout") == result.attempts
    assert result.percentile(99) is None
    assert result.served_after == 20  # once the slow clients have gone it serves again
