"""The bad-input probe: distinct requests, and that it does see 5xx and changed seeds."""

from __future__ import annotations

import pytest

from infra.bench.badinput import (
    MARKER_SEED,
    BadInputProbe,
    corpus,
    distinct,
    generated,
    run_bad_input,
)


def test_the_corpus_is_distinct_and_covers_the_kinds_of_bad_input():
    fixed = corpus()
    assert len(set(fixed)) == len(fixed)
    bodies = {p.body for p in fixed}
    for expected in (b"", b"true", b"null", b"[]", b'{"num": 1.5}', b'{"num": "abc"}',
                     b"\xc3\x28", b"{", b'{"num": [1]}', b'{"num": {}}'):
        assert expected in bodies
    assert any(len(p.body) > 1 << 20 for p in fixed), "an oversized body"
    assert any(b"9" * 4301 in p.body for p in fixed), "an integer past int()'s limit"
    assert any(p.raw for p in fixed), "malformed HTTP"
    assert any(p.method != "POST" for p in fixed)


def test_generated_requests_are_reproducible_for_a_seed():
    first, again = generated(30, seed=1), generated(30, seed=1)
    assert first == again
    assert len(first) == 30


def test_distinct_drops_repeats_and_keeps_order():
    a, b = BadInputProbe(body=b"a"), BadInputProbe(body=b"b")
    assert list(distinct([a, b, a, BadInputProbe(body=b"a")])) == [a, b]


def test_only_post_to_slash_sets_the_seed():
    assert BadInputProbe(body=b"x").sets_seed
    assert BadInputProbe(path="/?num=5").sets_seed
    assert not BadInputProbe(method="PUT").sets_seed
    assert not BadInputProbe(path="/health").sets_seed
    assert BadInputProbe(raw=b"POST / HTTP/1.1\r\n\r\n").sets_seed
    assert not BadInputProbe(raw=b"GARBAGE\r\n\r\n").sets_seed


@pytest.fixture
def plain_http(monkeypatch):
    """werkzeug's development server (the fake app's) mis-parses some malformed HTTP; that
    is gunicorn's job in the real app, so these tests keep one raw probe only."""
    monkeypatch.setattr("infra.bench.badinput._raw_requests", lambda: [b"GARBAGE\r\n\r\n"])


@pytest.mark.integration
def test_a_correct_app_gets_no_5xx_and_no_changed_seed(fake_app, plain_http):
    result = run_bad_input(fake_app.base_url, max_examples=20, progress=lambda _m: None)
    assert result.tried == result.from_corpus + result.generated
    assert result.tried >= len(corpus())
    assert result.server_errors == 0
    assert result.changed_on_reject == 0
    assert result.rejected > 0


@pytest.mark.integration
def test_a_buggy_app_is_caught(fake_app, plain_http):
    fake_app.crash_on = b"null"
    fake_app.write_then_reject = b"true"
    result = run_bad_input(fake_app.base_url, max_examples=5, progress=lambda _m: None)
    assert result.server_errors == 1
    assert result.examples_5xx == ["500: POST / [application/json] b'null'"]
    assert result.changed_on_reject == 1
    assert result.examples_changed[0].startswith(f"{MARKER_SEED} -> 666")
