"""The grader against hostile servers: every limit holds, each is a named finding, and the
text report never passes a control character through."""

from __future__ import annotations

import gzip
import itertools
import random

import grade_servers as apps
import pytest
from raw_servers import drip, response, self_signed_context

from infra.grade.grader import grade
from infra.grade.report import Report

pytestmark = pytest.mark.integration
TIMEOUT = 0.5


def run(address, timeout=TIMEOUT, deadline=10.0, **kw) -> Report:
    return grade(str(address), timeout=timeout, deadline=deadline, rng=random.Random(3), **kw)


def failed(report):
    return {c.number: c.code for c in report.checks if c.status == "FAIL"}


def assert_terminal_safe(text: str) -> None:
    bad = sorted({repr(ch) for ch in text if not (ch.isprintable() or ch == "\n")})
    assert not bad, f"control characters in the report: {bad}"


def always(*steps):
    return lambda _n: list(steps)


def test_a_5000_digit_body_is_classified_not_parsed(scripted):
    server = scripted(always((0, response(body=b"7" * 5000))))
    report = run(server.address)
    assert failed(report).get(3) == "number-too-long", report.render()
    assert "5,000 digits" in report.check(3).reason and "4,300" in report.check(3).reason
    assert "(5,000 characters in all)" in report.check(3).reason  # cut, size noted
    assert len(report.render()) < 5000


def test_an_endless_stream_of_zeros_stops_at_the_body_cap(scripted):
    def zeros(_n):
        yield (0, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        while True:
            yield (0, b"0" * 65536)

    report = run(scripted(zeros).address)
    assert failed(report).get(3) == "body-too-large", report.render()
    assert "more than 65,536 bytes" in report.check(3).reason


def test_a_gzip_bomb_is_decoded_only_up_to_the_cap(scripted):
    bomb = gzip.compress(b"0" * 50_000_000)  # ~50 KB on the wire, 50 MB decoded
    server = scripted(always((0, response(body=bomb, headers=["Content-Encoding: gzip"]))))
    report = run(server.address)
    assert failed(report).get(3) == "body-too-large", report.render()
    assert "after gzip decoding" in report.check(3).reason


def test_gzip_that_does_not_decode_is_bad_encoding(scripted):
    server = scripted(always((0, response(body=b"not gzip", headers=["Content-Encoding: gzip"]))))
    assert failed(run(server.address)) == {2: "bad-encoding"}


def test_a_gzipped_correct_body_is_read(scripted):
    server = scripted(always((0, response(body=gzip.compress(b"42"),
                                          headers=["Content-Encoding: gzip"]))))
    report = run(server.address)
    assert report.check(3).status == "PASS", report.render()


@pytest.mark.parametrize("part", ["status", "headers", "body"])
def test_an_answer_dripped_a_byte_at_a_time_hits_the_request_deadline(scripted, part):
    whole = response(body=b"12345")
    split = {"status": 0, "headers": 17, "body": len(whole) - 5}[part]

    def slow(_n):
        yield (0, whole[:split])
        yield from drip(whole[split:], 0.2)

    report = run(scripted(slow).address, deadline=5)
    assert failed(report) == {2: "slow-response"}, report.render()
    assert report.requests == 1  # a dead address gets no more requests
    assert report.seconds < 4 * TIMEOUT
    phase = {"status": "status line", "headers": "headers", "body": "body"}[part]
    assert f"the {phase} still arriving" in report.check(2).reason


def test_endless_100_continue_is_capped(scripted):
    def flood(_n):
        while True:
            yield (0, b"HTTP/1.1 100 Continue\r\n\r\n")

    report = run(scripted(flood).address)
    assert failed(report) == {2: "too-many-interim"}, report.render()
    assert "more than 10 interim" in report.check(2).reason


def test_a_few_interim_answers_before_the_real_one_are_fine(scripted):
    server = scripted(always((0, b"HTTP/1.1 100 Continue\r\n\r\n" * 3
                              + b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                              + response(body=b"5"))))
    report = run(server.address)
    assert report.check(2).status == "PASS" and report.check(3).status == "PASS", report.render()


def test_escape_codes_in_a_header_and_the_body_are_escaped(scripted):
    evil = "\x1b]0;pwned\x07\x1b[2J"
    server = scripted(always((0, response(body=f"{evil}\x00100".encode(),
                                          headers=[f"X-Served-By: i-{evil}"]))))
    report = run(server.address)
    assert failed(report).get(3) == "not-integer", report.render()
    text = report.render()
    assert_terminal_safe(text)
    assert "\\x1b]0;pwned\\x07" in text and "\\x00" in text
    reason = report.to_dict()["checks"][2]["reason"]  # --json carries the same escaped text
    assert "\\x1b]0;pwned\\x07" in reason and "\x1b" not in reason


def test_bidi_and_nul_in_the_address_notes_are_escaped():
    # the address parser refuses control characters outright, and shows them escaped
    from infra.errors import UserError
    from infra.grade.address import parse_address

    with pytest.raises(UserError) as err:
        parse_address("lb\u202e.example.com")
    assert "\\u202e" in str(err.value) and "\u202e" not in str(err.value)


@pytest.mark.parametrize(("first", "words"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH-2.0-OpenSSH_9.6"),
    (b"100", "`100`"),  # HTTP/0.9 style: a bare body, no status line
    (b"HTTP/1.1 OK\r\n\r\n", "HTTP/1.1 OK"),
    (b"\x00\x01\x02garbage\r\n", "\\x00\\x01\\x02garbage"),
])
def test_an_invalid_status_line_is_named_and_shown(scripted, first, words):
    report = run(scripted(always((0, first))).address)
    assert failed(report) == {2: "bad-status-line"}, report.render()
    assert words in report.check(2).reason
    assert_terminal_safe(report.render())


def test_tls_on_the_port_says_https(scripted):
    server = scripted(always((0, response(body=b"1"))), tls=self_signed_context())
    report = run(server.address)
    assert failed(report) == {2: "tls-port"}, report.render()
    assert ("this port speaks HTTPS; the autograder uses plain HTTP on port 80"
            in report.check(2).reason)
    assert report.requests == 2  # the GET and one handshake


def test_a_400_about_https_says_https(scripted):
    server = scripted(always((0, response("400 Bad Request",
                                          b"Client sent an HTTP request to an HTTPS server.\n"))))
    report = run(server.address)
    assert failed(report) == {2: "tls-port"}, report.render()


def test_arabic_indic_digits_are_not_whitespace(scripted):
    server = scripted(always((0, response(body="١٢٣".encode(),
                                          headers=["Content-Type: text/plain; charset=utf-8"]))))
    report = run(server.address)
    assert failed(report).get(3) == "non-ascii-digits", report.render()


@pytest.mark.parametrize("named", [False, True])
def test_random_values_do_not_count_as_instances(serve, named):
    rng = random.Random(11)
    lb = serve(apps.seed_app("i-0" if named else None,
                             get=lambda seed: str(rng.randrange(10**9))))
    report = run(lb, timeout=3.0)
    assert report.check(5).status == "FAIL", report.render()
    if named:
        assert failed(report)[5] == "single-instance"
        assert any("never POSTed" in d for d in report.check(5).details)
    else:
        assert failed(report)[5] == "values-unstable"
        assert "6 instances" not in report.render()
    assert failed(report)[4] == "post-not-applied"


@pytest.mark.parametrize(("answer", "code"), [
    (response(headers=[f"X-H{i}: v" for i in range(150)], body=b"1"), "too-many-headers"),
    (response(headers=["X-Big: " + "a" * 40_000], body=b"1"), "headers-too-large"),
    (response(headers=["no colon here"], body=b"1"), "bad-header"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad-framing"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12", "cut-off"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n12", "bad-framing"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\n1", "bad-encoding"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n", "cut-off"),  # closed in the middle of the headers
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n1", "bad-framing"),  # h11: chunked only
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n123\r\n0\r\n\r\n",
     "bad-framing"),  # a chunk longer than its size
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n1", "bad-framing"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "http-101"),  # unasked: just a status
])
def test_each_header_and_framing_limit_is_a_named_finding(scripted, answer, code):
    report = run(scripted(always((0, answer))).address)
    assert failed(report) == {2: code}, report.render()
    assert report.check(2).fix


def test_chunked_body_is_read(scripted):
    server = scripted(always((0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"2\r\n12\r\n1;ext=1\r\n3\r\n0\r\nX-Trailer: t\r\n\r\n")))
    report = run(server.address)
    assert report.check(3).status == "PASS", report.render()
    assert "`123`" in report.check(3).reason


def test_the_run_deadline_holds_against_a_slow_but_steady_server(scripted):
    # every answer comes in 0.3 s, within the 0.5 s request deadline: only the run's stops it
    def steady(n):
        return [(0.3, response(body=str(n).encode(), headers=["X-Served-By: i-0"]))]

    report = run(scripted(steady).address, deadline=2.0)
    assert report.seconds < 2.0 + TIMEOUT, report.seconds
    assert not report.passed
    assert "run deadline of 2 s" in report.render()


def test_loopback_only_refuses_a_public_name_without_looking_it_up(monkeypatch):
    # the suite's guard raises on any non-loopback getaddrinfo: this proves none happens
    monkeypatch.setenv("SEEDLB_LOOPBACK_ONLY", "1")
    report = run("my-lb-1.us-east-1.elb.amazonaws.com")
    assert failed(report) == {1: "loopback-only"}, report.render()
    assert report.requests == 0


def test_many_connections_each_get_their_own_script(scripted):
    # a sanity check of the harness: the connection number reaches the script
    seen = []
    server = scripted(lambda n: seen.append(n) or [(0, response(body=str(n).encode()))])
    run(server.address)
    server.close()  # every connection's thread has run its script (check 1's may lag)
    # (threads: in any order) check 1's bare TCP connect is number 0, the requests follow
    assert sorted(seen) == list(itertools.islice(itertools.count(), len(seen)))
    assert len(seen) == server.connections >= 2
