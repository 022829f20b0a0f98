"""The real server probed as an attacker would, over raw sockets on loopback: bodies cut
short of their Content-Length, and clients that send slowly or not at all."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from app_servers import INSTANCE_ID, OTHER_SERVERS, REPO, fresh_get, loopback_session

from infra.local.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]

# Bodies cut short: the client meant num=12345 and {"num": 7, "x": 1}.
CUT = {
    "form": (b"application/x-www-form-urlencoded", b"num=12", 9),
    "json": (b"application/json", b'{"num": 7}', 20),
}


def send_raw(port: int, data: bytes, close: str, timeout: float = 5.0) -> bytes | None:
    """Send `data`, then half-close and read the whole answer ("half"), or close at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if close != "half":
            return None
        reply = b""
        try:
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:  # the server answered and closed (a reset) before all was read
            pass
        return reply


def post_head(content_type: bytes, length: int | None) -> bytes:
    framing = (b"Transfer-Encoding: chunked" if length is None
               else b"Content-Length: %d" % length)
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%s\r\n\r\n" % (content_type,
                                                                              framing)


def status_and_json(reply: bytes) -> tuple[int, dict, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def set_seed(server, value: int) -> None:
    assert loopback_session().post(server.url + "/", json={"num": value}).text == str(value)


def access_lines(server, pattern: str, count: int, timeout: float = 5.0) -> list[str]:
    """The access log lines matching `pattern`, once there are `count` of them."""
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = [line for line in server.stdout.splitlines() if re.search(pattern, line)]
        return len(lines) >= count

    wait_until(logged, timeout)
    return lines


@pytest.fixture
def server(start_server, free_port, tmp_path):
    return start_server(free_port, env={"SEED_FILE": str(tmp_path / "seed")})


@pytest.mark.parametrize("kind", CUT)
def test_short_body_then_half_close_is_a_400_that_says_so(server, kind):
    content_type, body, length = CUT[kind]
    set_seed(server, 41)
    reply = send_raw(server.port, post_head(content_type, length) + body, "half")
    status, headers, error = status_and_json(reply)
    assert status == 400, reply
    assert f"before the {length} bytes its Content-Length announced" in error["error"]
    assert headers["x-served-by"] == INSTANCE_ID
    assert fresh_get(server.url + "/").text == "41"


@pytest.mark.parametrize("kind", CUT)
def test_short_body_then_plain_close_changes_nothing(server, kind):
    # Nobody reads the answer; the access log shows the app refused the body all the same.
    content_type, body, length = CUT[kind]
    set_seed(server, 42)
    assert send_raw(server.port, post_head(content_type, length) + body, "full") is None
    refused = access_lines(server, r'"POST / HTTP/1\.1" 400 ', 1)
    assert len(refused) == 1, server.stdout
    assert fresh_get(server.url + "/").text == "42"


def test_chunked_body_cut_short_is_a_400(server):
    set_seed(server, 43)
    reply = send_raw(server.port, post_head(b"application/x-www-form-urlencoded", None)
                     + b"6\r\nnum=12\r\n", "half")  # no last chunk: num=12345 was meant
    status, _, error = status_and_json(reply)
    assert status == 400, reply
    assert "could not be read" in error["error"]
    assert fresh_get(server.url + "/").text == "43"


def test_whole_body_on_a_raw_socket_is_taken(server):
    # The same request with every byte sent: the probes above can tell the difference.
    # (No half-close here: the server may then drop the answer to a complete request.)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head(*CUT["form"][:1], 9).replace(b"\r\n\r\n", b"\r\nConnection: "
                     b"close\r\n\r\n") + b"num=12345")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK" and reply.endswith(b"\r\n\r\n12345")


@pytest.mark.parametrize("name", OTHER_SERVERS)
def test_other_servers_of_the_app_refuse_a_short_body_too(start_server, free_port, name):
    # The rule lives in the app, not in granian: gunicorn hands Werkzeug the short body as
    # if whole (wsgi.input_terminated), and the app refuses it itself.
    server = start_server(free_port, argv=OTHER_SERVERS[name](free_port))
    set_seed(server, 44)
    reply = send_raw(free_port, post_head(*CUT["form"][:1], 9) + b"num=12", "half")
    status, headers, error = status_and_json(reply)
    assert status == 400, reply
    assert headers["x-served-by"] == INSTANCE_ID
    assert "before the 9 bytes its Content-Length announced" in error["error"]
    assert fresh_get(server.url + "/").text == "44"


# --- slow and idle clients ---------------------------------------------------------------

def test_200_slow_clients_starve_no_one(start_server, free_port):
    # The bench's probe (infra/bench/slowclients.py), held for 7 s here rather than 15 s:
    # idle connections, dripping headers and half bodies, a third each.
    from infra.bench.slowclients import run_slow_clients

    server = start_server(free_port, "--body-timeout", "3", "--idle-timeout", "5")
    set_seed(server, 45)
    result = run_slow_clients(server.url + "/", connections=200, window_s=7)
    assert result.refused == 0
    assert result.attempts >= 50 and result.share >= 0.95, (result.served, result.failures)
    assert result.served_after == 20  # ... and afterwards the server serves as before
    assert fresh_get(server.url + "/").text == "45"


def test_half_a_body_gets_a_408_within_the_body_timeout(start_server, free_port):
    server = start_server(free_port, "--body-timeout", "2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post_head(b"application/json", 100) + b'{"num": ')
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after its answer
            answer += chunk
        waited = time.monotonic() - started
    status, headers, error = status_and_json(answer)
    assert status == 408 and headers["connection"] == "close"
    assert headers["x-served-by"] == INSTANCE_ID
    assert "did not arrive within 2 s" in error["error"]
    assert 1.5 < waited < 5
    assert access_lines(server, r'"POST / HTTP/1\.1" 408 ', 1)


def test_dripped_headers_are_cut_off_at_the_idle_timeout(start_server, free_port):
    server = start_server(free_port, "--idle-timeout", "2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 8:
                sock.sendall(b"X-Slow: 1\r\n")  # a line every 0.2 s does not extend it
                time.sleep(0.2)
        except OSError:
            pass  # reset: the server has closed it
        waited = time.monotonic() - started
    assert 1.5 < waited < 5


def test_idle_keep_alive_connections_stay_open_within_the_idle_timeout(start_server,
                                                                       free_port):
    # The header timeout is also the keep-alive timeout: an ALB reuses connections idle for
    # up to 60 s, so the default must be longer (75 s); here 3 s stands in for it.
    server = start_server(free_port, "--idle-timeout", "3")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)
        sock.sendall(request)  # still open within the timeout
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # then closed by the server
        assert 2 < time.monotonic() - started < 5


# --- stopping -------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT],
                         ids=lambda s: s.name)
def test_signal_stops_promptly_with_clients_connected(start_server, free_port, sig):
    # systemd stops with SIGTERM, the local testbed with SIGQUIT (then SIGKILL after 3 s).
    server = start_server(free_port)
    from infra.bench.slowclients import open_slow_connections

    clients, _ = open_slow_connections("127.0.0.1", free_port, 30)
    keep_alive = loopback_session()
    keep_alive.get(server.url + "/")
    try:
        started = time.monotonic()
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=10) in (0, -sig)
        assert time.monotonic() - started < 2.5
    finally:
        for _, sock in clients:
            sock.close()
    left = subprocess.run(["pgrep", "-g", str(server.proc.pid)], capture_output=True,
                          text=True).stdout.split()
    assert left == [], "workers outlived the master"


def test_port_in_use_is_a_clear_error(start_server, free_port):
    # granian binds with SO_REUSEPORT; without the app's own check a second server would
    # start on the same port and take half the connections.
    first = start_server(free_port)
    second = subprocess.run([sys.executable, "-m", "app", "--port", str(free_port)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{free_port}" in second.stderr
    assert "Traceback" not in second.stderr
    assert fresh_get(first.url + "/health").status_code == 200


def test_oversized_request_head_is_refused(server):
    # granian would buffer 408 KiB of headers by default; 16 KiB is the bound here (what a
    # slow client can make a connection hold), and 12 KiB of headers still pass.
    set_seed(server, 46)
    head = post_head(b"application/json", 10).replace(b"Host: x", b"Host: x\r\nX: " + b"a" * 20000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b'{"num": 5}')  # no half-close: the 431 comes before a reset
        assert sock.recv(65536).split(b" ", 2)[1] == b"431"
    assert fresh_get(server.url + "/").text == "46"
    big = loopback_session().get(server.url + "/", headers={"X-Big": "a" * 12000})
    assert big.status_code == 200
