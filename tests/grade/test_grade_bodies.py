"""Each body pitfall is recognized and named from the body and Content-Type alone."""

from __future__ import annotations

import pytest

from infra.grade.pitfalls import classify_body, explain_status, lenient_value


@pytest.mark.parametrize("body", ["0", "100", "-7", "123456789012345678901234567890"])
@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "text/plain", ""])
def test_bare_integers_pass(body, ctype):
    assert classify_body(body, ctype) is None


@pytest.mark.parametrize(
    ("body", "ctype", "code"),
    [
        ('"100"', "text/html", "json-quoted"),
        ('"100"\n', "application/json", "json-quoted"),  # jsonify(str(seed))
        ("b'100'", "text/html", "bytes-literal"),
        ("b'\"1000\"\\n'", "text/html", "bytes-literal"),  # FAQ 6, verbatim
        ('b"100"', "text/plain", "bytes-literal"),
        ("100\n", "text/html", "whitespace"),
        (" 100", "text/html", "whitespace"),
        ("100\r\n", "text/plain", "whitespace"),
        ("100", "application/json", "json-content-type"),
        ("100", "application/problem+json", "json-content-type"),
        ("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "text/html", "html-page"),
        ("<h1>Error</h1>", "text/html", "html-page"),
        ('{"num": 100}', "application/json", "json-document"),
        ("100.0", "text/plain", "not-integer"),
        ("", "text/plain", "empty-body"),
        ("seed=100", "text/plain", "not-integer"),
        ("+100", "text/plain", "not-integer"),
    ],
)
def test_pitfalls_are_named(body, ctype, code):
    finding = classify_body(body, ctype)
    assert finding is not None
    assert finding.code == code
    assert finding.fix


def test_bytes_literal_reason_cites_faq6_and_shows_the_body_verbatim():
    finding = classify_body("b'\"1000\"\\n'", "text/html")
    assert "FAQ 6" in finding.reason
    assert "`b'\"1000\"\\n'`" in finding.reason


def test_lenient_value_reads_through_the_wrapping():
    assert lenient_value('b\'"1000"\\n\'') == 1000
    assert lenient_value('"-5"\n') == -5
    assert lenient_value("<html>1 2</html>") is None


@pytest.mark.parametrize(("status", "words"), [
    (502, ["FAQ 6", "0.0.0.0", "5000"]),
    (503, ["OutOfService", "FAQ 4"]),
    (504, ["security group", "5000"]),
    (501, ["FAQ 3", "http://"]),
])
def test_status_explanations_use_the_faq_terms(status, words):
    finding = explain_status(status)
    text = finding.reason + " " + finding.fix
    assert finding.code == f"http-{status}"
    for word in words:
        assert word in text


def test_up_to_4300_digits_is_an_integer_and_one_more_is_too_long():
    assert classify_body("9" * 4300, "text/plain") is None
    finding = classify_body("9" * 4301, "text/plain")
    assert finding.code == "number-too-long" and "4,301 digits" in finding.reason
    assert lenient_value("9" * 4301) is None  # no ValueError from int()
    assert lenient_value("x" + "1" * 100_000) is None


@pytest.mark.parametrize(("body", "value"), [("١٢٣", None), ("١٢٣\n", None), ("-٥", None),
                                             ("12٣", 12)])  # the ASCII run, like any wrapping
def test_non_ascii_digits_are_named(body, value):
    assert classify_body(body, "text/plain").code == "non-ascii-digits"
    assert lenient_value(body) == value


def test_a_cut_body_is_too_large_whatever_it_holds():
    finding = classify_body("0" * 65536, "text/plain", size="more than 65,536 bytes")
    assert finding.code == "body-too-large"
    assert "more than 65,536 bytes" in finding.reason and len(finding.reason) < 300


def test_control_characters_in_a_body_are_escaped_in_the_reason():
    finding = classify_body("\x1b[2J\x00\u202e1", "text/plain")
    assert finding.code == "not-integer"
    assert finding.reason.isprintable()
    assert "\\x1b[2J\\x00\\u202e1" in finding.reason


def test_escape_and_shown():
    from infra.grade.display import escape, shown

    assert escape("ok \\ `x`") == "ok \\ `x`"
    assert escape("a\x1b]0;t\x07b\r\n\t\x7f\x9b\u200f\U000e0001") == \
        "a\\x1b]0;t\\x07b\\r\\n\\t\\x7f\\x9b\\u200f\\U000e0001"
    assert shown("x" * 100, 10) == "xxxxxxxxxx... (100 characters in all)"
