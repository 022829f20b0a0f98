"""The target group's health checks as an ALB makes them (infra/local/health.py), and the
sockets that stand for dropped and refused packets (infra/local/sinks.py): real servers on
loopback ports."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.config import success_codes_include
from infra.local import health, processes
from infra.local.processes import wait_until
from infra.local.sinks import DropSink, HoldSink, RefuseSink, Sinks

PROBE = health.HealthCheckProbe("unused", "/health", timeout=0.5, interval=0.2, healthy=2,
                                unhealthy=2)


class _App(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        code = 200 if self.path == "/health" else 404
        self.server.agents.append(self.headers.get("User-Agent"))  # before the answer: no race
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    server.agents = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def at(server_or_address, path="/health", **changes) -> health.HealthCheckProbe:
    address = server_or_address if isinstance(server_or_address, str) else \
        f"127.0.0.1:{server_or_address.server_address[1]}"
    return health.HealthCheckProbe(**{**vars(PROBE), "address": address, "path": path, **changes})


def test_a_200_passes_and_is_sent_as_the_alb_sends_it(app):
    assert health.check_once(at(app)) is None
    assert app.agents == ["ELB-HealthChecker/2.0"]


def test_a_missing_path_is_a_response_code_mismatch(app):
    assert health.check_once(at(app, "/index.html")) == (
        "Target.ResponseCodeMismatch", "Health checks failed with these codes: [404]")
    assert health.check_once(at(app, "/index.html", matcher="200-499")) is None


def test_nothing_listening_is_a_failed_health_check():
    sink = RefuseSink()
    try:
        assert health.check_once(at(sink.address)) == health.FAILED
    finally:
        sink.close()


def test_a_dropped_packet_is_a_timeout():
    sink = HoldSink()
    try:
        started = time.monotonic()
        assert health.check_once(at(sink.address)) == health.TIMEOUT
        assert 0.4 <= time.monotonic() - started < 3.0  # waited for the probe's timeout
    finally:
        sink.close()


def _run(h: health.Health, results) -> list[tuple[str, str | None]]:
    seen = []
    for result in results:
        h.record(result, PROBE)
        seen.append((h.state, h.reason))
    return seen


def test_thresholds_count_results_in_a_row():
    timeout = health.TIMEOUT
    seen = _run(health.Health(), [None, None, timeout, None, timeout, timeout, None, None])
    assert seen == [
        ("initial", "Elb.InitialHealthChecking"),
        ("healthy", None),
        ("healthy", None),  # one failure is not two in a row
        ("healthy", None),
        ("healthy", None),
        ("unhealthy", "Target.Timeout"),
        ("unhealthy", "Target.Timeout"),  # one pass is not two in a row
        ("healthy", None),
    ]


def test_a_new_target_can_go_straight_to_unhealthy_and_keeps_the_latest_reason():
    refused, mismatch = health.FAILED, ("Target.ResponseCodeMismatch", "codes: [404]")
    seen = _run(health.Health(), [refused, refused, mismatch])
    assert seen == [("initial", "Elb.InitialHealthChecking"),
                    ("unhealthy", "Target.FailedHealthChecks"),
                    ("unhealthy", "Target.ResponseCodeMismatch")]
    assert health.Health().as_entry() == {"State": "initial",
                                          "Reason": "Elb.RegistrationInProgress",
                                          "Description": "Target registration is in progress"}


@pytest.mark.parametrize(("matcher", "code", "ok"), [
    ("200", 200, True), ("200", 204, False), ("200-299", 204, True), ("200,302", 302, True),
    ("200, 302", 301, False), ("", 200, False),
])
def test_matcher(matcher, code, ok):
    assert success_codes_include(matcher, code) is ok


def test_monitor_follows_the_route_and_says_when_to_fail_open(app):
    changes = threading.Event()
    monitor = health.Monitor(on_change=changes.set)
    hold = HoldSink()
    try:
        monitor.update("arn:tg", {"i-1:5000": at(app), "i-2:5000": at(app)})
        assert wait_until(lambda: set(s["State"] for s in monitor.entries().values())
                          == {"healthy"}, 5)
        assert not monitor.fail_open()
        # Both routes now drop: both time out twice, and an ALB would route to all of them.
        monitor.update("arn:tg", {"i-1:5000": at(hold.address), "i-2:5000": at(hold.address)})
        assert wait_until(monitor.fail_open, 8)
        assert {e["Reason"] for e in monitor.entries().values()} == {"Target.Timeout"}
        # A target that leaves is forgotten; a new group starts afresh.
        monitor.update("arn:tg", {"i-1:5000": at(hold.address)})
        assert list(monitor.entries()) == ["i-1:5000"]
        monitor.update("arn:other", {"i-1:5000": at(app)})
        assert monitor.entries()["i-1:5000"]["State"] in ("initial", "healthy")
        assert changes.is_set()
    finally:
        monitor.stop()
        hold.close()


def test_drop_sink_times_connects_out(free_port):
    sink = DropSink("127.0.0.1", free_port)
    try:
        with socket.socket() as client:
            client.settimeout(1.0)
            with pytest.raises(TimeoutError):
                client.connect(("127.0.0.1", free_port))
    finally:
        sink.close()
    with socket.socket() as s:  # and the port is free again at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", free_port))


def test_hold_sink_accepts_and_never_answers():
    sink = HoldSink()
    try:
        host, port = sink.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=1.0) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(TimeoutError):
                client.recv(1)
    finally:
        sink.close()


def test_refuse_sink_refuses():
    sink = RefuseSink()
    try:
        host, port = sink.address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=1.0)
    finally:
        sink.close()


def _plain_bind(address: str) -> None:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.bind((host, int(port)))


def test_a_reserved_port_is_kept_for_caddy_and_refuses_meanwhile():
    """The parking port and the shut front (infra/local/supervisor.py): nobody else gets
    the port, a client is refused, and a server that sets SO_REUSEADDR, as Caddy does, can
    still listen there."""
    sinks = Sinks()
    try:
        address = sinks.reserve("127.0.0.1:0")
        host, port = address.rsplit(":", 1)
        with pytest.raises(OSError, match="in use"):
            _plain_bind(address)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=1.0)
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, int(port)))
            server.listen()
            socket.create_connection((host, int(port)), timeout=1.0).close()
        with pytest.raises(OSError, match="in use"):  # still held after the server went
            _plain_bind(address)
    finally:
        sinks.close()
    _plain_bind(address)  # let go with the sinks


def test_a_port_a_listener_has_is_reserved_once_it_lets_go():
    sinks = Sinks()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        assert sinks.reserve(address) == address  # Caddy serves there: not held yet
        listener.close()
        _plain_bind(address)  # so the port was free for anyone
        sinks.reserve(address)
        with pytest.raises(OSError, match="in use"):
            _plain_bind(address)
    finally:
        listener.close()
        sinks.close()


def test_the_drop_sink_holds_the_front_s_address_when_it_lets_go():
    """lb-sg-no-80 fixed: the drop sink closes and Caddy listens there again; in between,
    the address is no one else's."""
    sinks = Sinks()
    address = f"127.0.0.1:{processes.free_port()}"  # not held: as Caddy leaves it
    try:
        sinks.open_drop(address)
        host, port = address.rsplit(":", 1)
        with socket.socket() as client:
            client.settimeout(1.0)
            with pytest.raises(TimeoutError):
                client.connect((host, int(port)))
        sinks.close_drop()
        with pytest.raises(OSError, match="in use"):
            _plain_bind(address)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=1.0)
    finally:
        sinks.close()
    _plain_bind(address)
