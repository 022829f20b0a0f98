"""Server-side request forgery: where the grader grades for others (--roster, --gradescope),
an address that is, or resolves to, loopback, private, link-local, multicast or reserved
space is a FAIL that says it is not public, and gets no byte. Shown by counting the
connections real loopback servers receive, and, for the addresses no test may reach
(169.254.169.254, 10.0.0.0/8, ...), by the suite's own guard, which fails any test whose
process so much as tries to connect or look up a non-loopback name."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import classroom
import pytest
from classroom import grade_cli, read_gradebook

from infra.cli import main
from infra.grade.grader import grade

pytestmark = [pytest.mark.integration]


@pytest.fixture
def setups():
    made = []

    def start(kind="correct", host="127.0.0.1", **kw):
        made.append(classroom.start_setup(kind, len(made), host=host, **kw))
        return made[-1]

    yield start
    for setup in made:
        setup.close()


def test_a_class_run_sends_nothing_to_loopback(tmp_path, setups):
    one, two, three = setups(), setups(with_instances=True), setups(host="127.0.0.2")
    port = one.address.split(":")[1]
    roster = tmp_path / "class.csv"
    classroom.write_roster([one, two, three], roster)
    with open(roster, "a", newline="") as f:
        f.write(f"by-name,localhost:{port},\r\n"  # the name's address is judged, not its spelling
                f"ipv6-mapped,[::ffff:127.0.0.1]:{port},\r\n"
                f"public-lb-private-instances,192.0.2.1,\"{two.instances[0]}\"\r\n")
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "1",
                        allow_private=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [r["verdict"] for r in rows] == ["FAIL"] * 6
    for row in rows[:5]:
        assert row["reasons"].startswith("not-public: address is not public: "), row
        assert row["connect"] == "FAIL" and row["get_200"] == "SKIP"
    assert "localhost resolves to 127.0.0.1, a loopback address" in rows[3]["reasons"]
    assert sum(s.connections for s in (one, two, three)) == 0  # not one connection
    assert "not-public" in proc.stdout
    # the three setups' rows with --allow-private: the servers were there all along
    classroom.write_roster([one, two, three], roster)
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "1")
    _, rows = read_gradebook(out)
    assert [r["verdict"] for r in rows] == ["PASS"] * 3, [r["reasons"] for r in rows]
    assert one.connections > 0 and three.connections > 0


def test_gradescope_refuses_loopback_and_says_so_to_the_student(tmp_path, setups):
    lb = setups()
    results = tmp_path / "results.json"
    proc, _ = grade_cli(lb.address, "--gradescope", str(results), allow_private=False)
    assert proc.returncode == 1
    doc = json.loads(results.read_text())
    assert doc["score"] == 0
    first = doc["tests"][0]
    assert first["output"].startswith("FAIL: address is not public: 127.0.0.1, a loopback")
    assert lb.connections == 0
    # a single grade on one's own machine grades loopback as it always did
    proc, _ = grade_cli(lb.address, "--timeout", "2")
    assert proc.returncode == 0, proc.stdout
    assert lb.connections > 0


NOT_PUBLIC = ["169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "0.0.0.0",
              "224.0.0.1", "240.0.0.1", "100.64.0.1", "[fe80::1]", "[fc00::1]",
              "[::ffff:10.0.0.1]", "[64:ff9b::a9fe:a9fe]", "[2002:a00:1::]", "[::]"]


def test_metadata_and_private_addresses_get_no_packet(tmp_path, capsys, monkeypatch):
    # In this process, under the suite's guard (tests/offmachine.py): any connect() to, or
    # lookup of, an address off this machine raises OffMachineTraffic and fails the test.
    # SEEDLB_LOOPBACK_ONLY is the grader's own belt; it is taken off to test the braces.
    monkeypatch.delenv("SEEDLB_LOOPBACK_ONLY")
    roster = tmp_path / "class.csv"
    rows = [f"s{i},{a}," for i, a in enumerate(NOT_PUBLIC)]
    rows.append('metadata-instances,192.0.2.10,"169.254.169.254:80,10.0.0.5"')
    roster.write_text("student,address,instances\n" + "\n".join(rows) + "\n")
    out = tmp_path / "grades.csv"
    code = main(["grade", "--roster", str(roster), "--out", str(out), "--timeout", "1"])
    assert code == 0, capsys.readouterr()
    _, graded = read_gradebook(out)
    assert [r["verdict"] for r in graded] == ["FAIL"] * len(rows)
    for row in graded[:-1]:
        assert row["reasons"].startswith("not-public: address is not public"), row
    # 192.0.2.10 (TEST-NET-1, documentation space) is not global either: nothing sent at all
    assert graded[-1]["reasons"].startswith("not-public"), graded[-1]


def test_single_gradescope_grade_of_the_metadata_service(tmp_path, monkeypatch):
    monkeypatch.delenv("SEEDLB_LOOPBACK_ONLY")
    results = tmp_path / "results.json"
    code = main(["grade", "169.254.169.254", "--gradescope", str(results)])
    assert code == 1
    doc = json.loads(results.read_text())
    assert doc["score"] == 0 and "link-local" in doc["tests"][0]["output"]
    assert "metadata" in doc["tests"][0]["output"]


@pytest.mark.parametrize(("ip", "public"), [
    ("54.214.1.2", True), ("2600:1f18::1", True), ("8.8.8.8", True),
    ("127.0.0.1", False), ("::1", False), ("169.254.169.254", False), ("fe80::1", False),
    ("10.0.0.1", False), ("172.31.255.255", False), ("192.168.0.1", False),
    ("fd00::1", False), ("0.0.0.0", False), ("::", False), ("239.1.1.1", False),
    ("ff02::1", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("::ffff:169.254.169.254", False), ("64:ff9b::7f00:1", False), ("2002:7f00:1::", False),
    ("100.64.0.1", False), ("192.0.2.1", False),
])
def test_what_counts_as_public(ip, public):
    from infra.grade.public import not_public

    assert (not_public(ip) is None) == public, not_public(ip)


class _Counting(ThreadingHTTPServer):
    daemon_threads = True


def _counting_server(host: str, port: int = 0):
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"7")

        def log_message(self, *args):
            pass

    server = _Counting((host, port), Handler)
    server.accepted = []
    real = server.get_request

    def get_request():
        conn, peer = real()
        server.accepted.append(peer)
        return conn, peer

    server.get_request = get_request
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def test_a_name_is_looked_up_once_and_only_the_checked_address_is_reached(monkeypatch):
    import infra.grade.transport as transport

    # DNS rebinding: a name that answers a public address to the check and a private one to
    # the connection. Here 127.0.0.2 plays the public address and 127.0.0.3 the private one
    # (the test's policy says so); the name answers .2 the first time and .3 after.
    public = _counting_server("127.0.0.2")
    port = public.server_address[1]
    private = _counting_server("127.0.0.3", port)  # the same port on the other address
    answers = iter(["127.0.0.2"] + ["127.0.0.3"] * 100)
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(transport, "not_public",  # the policy the probe applies
                        lambda ip: "private, in this test" if ip == "127.0.0.3" else None)
    monkeypatch.delenv("SEEDLB_LOOPBACK_ONLY")
    try:
        report = grade(f"rebind.localhost:{port}", timeout=1, public_only=True)
    finally:
        public.shutdown()
        private.shutdown()
    assert lookups == ["rebind.localhost"]  # one lookup per grade, checked once
    assert public.accepted and not private.accepted, (public.accepted, private.accepted)
    assert report.check(1).status == "PASS" and report.requests >= 2

