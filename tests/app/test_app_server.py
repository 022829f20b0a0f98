"""The real production server: `python -m app` (granian, several workers) on a loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from app_servers import COMBINED, INSTANCE_ID, REPO, fresh_get, loopback_session

from app import MAX_BODY
from app.parsing import MAX_DIGITS
from infra.local.processes import wait_until

pytestmark = pytest.mark.integration

@pytest.fixture
def server(start_server, free_port, tmp_path):
    return start_server(free_port, "--workers", "2", "--threads", "4",
                        env={"SEED_FILE": str(tmp_path / "seed")})


def test_port_flag_alone_answers_zero(start_server, free_port):
    # The "done when": `python -m app --port 5000` answers `curl localhost:5000/` with 0.
    server = start_server(free_port)
    response = fresh_get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "0"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Served-By"] == INSTANCE_ID
    assert response.headers["Server"] == "granian"  # the production server, not Werkzeug's


def test_concurrent_posts_and_gets_stay_consistent(server):
    # Values of very different lengths, so that a torn read would show as a value nobody sent.
    lengths = [1, 2, 9, 50, 700, 2500, MAX_DIGITS]
    values_by_thread = {t: [str(t + 1) * n if n > 1 else str(t + 1) for n in lengths]
                        for t in range(8)}
    posted = {v for vs in values_by_thread.values() for v in vs}
    allowed = posted | {"0"}
    problems: list[str] = []
    seen: set[str] = set()
    lock = threading.Lock()

    def check(response: requests.Response, what: str) -> None:
        if response.status_code >= 500 or response.headers.get("X-Served-By") != INSTANCE_ID:
            with lock:
                problems.append(f"{what}: {response.status_code} {response.text[:80]}")

    def poster(thread: int) -> None:
        with loopback_session() as session:
            for round_ in range(6):
                for value in values_by_thread[thread]:
                    response = session.post(server.url + "/", json={"num": int(value)},
                                            timeout=10)
                    check(response, "POST")
                    if response.text != value:
                        problems.append(f"POST {value[:20]} returned {response.text[:20]}")
                    if round_ % 2:
                        check(session.get(server.url + "/", timeout=10), "GET")

    def getter(_: int) -> None:
        with loopback_session() as session:
            for i in range(120):
                response = (session.get(server.url + "/", timeout=10) if i % 3
                            else fresh_get(server.url + "/"))
                check(response, "GET")
                with lock:
                    seen.add(response.text)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(poster, t) for t in values_by_thread]
        futures += [pool.submit(getter, g) for g in range(8)]
        for future in futures:
            future.result()

    assert problems == []
    torn = seen - allowed
    assert not torn, f"GET returned values nobody posted: {[v[:30] for v in torn]}"
    assert len(seen) > 1  # the getters really overlapped the posters

    # After the last POST has returned, every GET (any worker, any thread) returns it.
    final = "-" + "8" * 1234
    assert loopback_session().post(server.url + "/", data=f'{{"num": {final}}}').text == final
    with ThreadPoolExecutor(max_workers=16) as pool:
        bodies = list(pool.map(lambda _: fresh_get(server.url + "/").text, range(64)))
    assert set(bodies) == {final}


def test_read_your_write_across_connections(server):
    # POST on one kept-alive connection, GET on new ones: with two workers these are often
    # served by different processes, which must agree.
    with loopback_session() as writer:
        for i in range(40):
            value = (-1) ** i * (i * 7919) ** (1 + i % 5)
            assert writer.post(server.url + "/", json={"num": value}).text == str(value)
            assert fresh_get(server.url + "/").text == str(value)


def test_killed_workers_come_back_with_the_same_seed(server):
    loopback_session().post(server.url + "/", json={"num": 4242})
    old = server.wait_workers(2)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    def replaced() -> bool:
        new = server.worker_pids()
        return len(new) == 2 and not set(new) & set(old)

    if not wait_until(replaced, 20, 0.1):
        pytest.fail(f"granian did not replace its workers: {old} -> {server.worker_pids()}")
    server.wait_ready()
    assert {fresh_get(server.url + "/").text for _ in range(10)} == {"4242"}


def test_seed_file_survives_a_server_restart(start_server, free_port, tmp_path):
    env = {"SEED_FILE": str(tmp_path / "seed")}
    first = start_server(free_port, env=env)
    assert loopback_session().post(first.url + "/", json={"num": -31}).status_code == 200
    assert first.stop() == 0
    second = start_server(free_port, env=env)
    assert fresh_get(second.url + "/").text == "-31"
    assert "restored -31" in second.stderr


def test_corrupt_seed_file_starts_at_zero(start_server, free_port, tmp_path):
    seed_file = tmp_path / "seed"
    seed_file.write_bytes(b"\x00\x00garbage")
    server = start_server(free_port, env={"SEED_FILE": str(seed_file)})
    assert fresh_get(server.url + "/").text == "0"
    assert fresh_get(server.url + "/health").status_code == 200
    assert server.stderr.count("is corrupt") == 1  # once, in the master, not per worker
    # in the error log format of the server's own lines: [time] [pid] [LEVEL]
    assert re.search(r"^\[[^\]]+\] \[\d+\] \[ERROR\] seed: the seed file .* is corrupt",
                     server.stderr, re.MULTILINE)


def test_access_log_one_combined_line_per_request(server):
    with loopback_session() as session:
        session.get(server.url + "/")
        session.post(server.url + "/", json={"num": 1})
        session.post(server.url + "/", data=b"bad")
        session.delete(server.url + "/")
    server.stop()
    lines = [line for line in server.stdout.splitlines() if '"GET /health' not in line]
    assert len(lines) == 4, server.stdout
    assert all(COMBINED.match(line) for line in lines), lines
    assert [line.split('"')[2].split()[0] for line in lines] == ["200", "200", "400", "405"]
    assert "Traceback" not in server.stderr


def test_limits_on_the_real_server(server):
    with loopback_session() as session:
        big = b'{"num": 1}' + b" " * MAX_BODY
        assert session.post(server.url + "/", data=big).status_code == 413
        # chunked (a generator body has no Content-Length)
        chunks = (b" " * 4096 for _ in range(MAX_BODY // 4096 + 2))
        assert session.post(server.url + "/", data=chunks).status_code == 413
        small = iter([b'{"num": ', b"77}"])
        assert session.post(server.url + "/", data=small).text == "77"
        response = session.put(server.url + "/", json={"num": 1})
        assert response.status_code == 405 and "POST" in response.headers["Allow"]
        assert response.headers["X-Served-By"] == INSTANCE_ID
        assert session.get(server.url + "/").text == "77"


def test_413_keeps_the_connection_usable(server):
    # A 413 announced as keep-alive must not be followed by a close: a load balancer that
    # reuses the connection would turn the next request into a 502.
    with loopback_session() as session:
        for _ in range(3):
            response = session.post(server.url + "/", data=b" " * (3 * MAX_BODY))
            assert response.status_code == 413
            assert session.get(server.url + "/").status_code == 200


def test_workers_from_environment_and_threads_noted_as_ignored(start_server, free_port):
    server = start_server(free_port, env={"APP_WORKERS": "3", "APP_THREADS": "2"})
    server.wait_workers(3)
    # a worker serves from one event loop: APP_THREADS changes nothing, and says so
    assert "note: --threads and APP_THREADS are ignored now" in server.stderr


def test_help_explains_options_and_environment():
    result = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for word in ("--host", "--port", "--workers", "--threads", "INSTANCE_ID", "SEED_FILE"):
        assert word in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "70000"], "not a TCP port"),
    (["--workers", "0"], "more than 0"),
    (["--threads", "many"], "not a whole number"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    result = subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_flask_run_still_works(tmp_path, free_port):
    env = {**os.environ, "INSTANCE_ID": INSTANCE_ID}
    env.pop("SEED_FILE", None)
    with open(tmp_path / "flask.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(free_port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{free_port}/"
        answers = []

        def posted() -> bool:
            assert proc.poll() is None, (tmp_path / "flask.log").read_text()
            try:
                answers.append(loopback_session().post(url, data='{"num": 5}', timeout=5))
            except requests.ConnectionError:
                return False
            return True

        assert wait_until(posted, 20, 0.1), (tmp_path / "flask.log").read_text()
        assert answers[-1].text == "5"
        assert fresh_get(url).text == "5"
    finally:
        proc.terminate()
        proc.wait(timeout=15)




@pytest.mark.parametrize("chunk_size", [b"zz", b"-1", b"1"])  # 1: missing terminator
def test_malformed_chunked_body_is_400_not_500(server, chunk_size):
    # Found by `make bench`'s bad-input probe: gunicorn raises InvalidChunkSize while the app
    # reads the body. A body that cannot be read is the client's mistake, and changes nothing.
    import socket

    with loopback_session() as session:
        assert session.post(server.url + "/", json={"num": 41}).text == "41"
    host, port = server.url.removeprefix("http://").split(":")
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + chunk_size + b"\r\n{\"num\": 5}\r\n0\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", reply[:300]
    assert fresh_get(server.url + "/").text == "41"


def test_a_killed_worker_is_replaced_and_shares_the_seed(server, tmp_path):
    # granian starts a new worker process, which attaches to the seed map by its name;
    # once a POST returns, every later GET on any worker (old or new) returns its value.
    seed_map = tmp_path / ".seed.map"
    assert seed_map.is_file()
    old = server.wait_workers(2)
    victim, survivor = old
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: set(server.worker_pids()) not in ({survivor}, set(old)), 20, 0.1)
    new = server.wait_workers(2)
    assert survivor in new and victim not in new
    (newcomer,) = set(new) - {survivor}
    assert str(seed_map) in Path(f"/proc/{newcomer}/maps").read_text()
    server.wait_ready()
    for value in (7, -123456789, 10**400):
        with loopback_session() as session:  # a new connection: either worker may take it
            assert session.post(server.url + "/", json={"num": value},
                                headers={"Connection": "close"}).text == str(value)
        assert {fresh_get(server.url + "/").text for _ in range(24)} == {str(value)}
    assert "Respawning worker" in server.stderr or "Spawning worker" in server.stderr


def test_head_and_odd_paths(server):
    with loopback_session() as session:
        head = session.head(server.url + "/")
        assert (head.status_code, head.content, head.headers["Content-Length"]) == (200, b"", "1")
        assert head.headers["X-Served-By"] == INSTANCE_ID
        assert session.get(server.url + "/heal%74h").text == "ok"  # percent-decoded path
        odd = session.get(server.url + "/%ff%fe")  # not UTF-8: a 404, not a 500
        assert odd.status_code == 404 and odd.headers["X-Served-By"] == INSTANCE_ID
