"""Regression tests named after the seed document's FAQ pitfalls, and every way graders POST.

FAQ 6: "Not able to parse the num value you are sending because it is being received as a
byte literal such as this: b'"1000"\\n'" and "flask server is returning bytes format of a
string instead of just the string itself".
"""

from __future__ import annotations

import json

import pytest


def test_get_body_is_not_a_bytes_literal(client):
    client.post("/", json={"num": 1000})
    body = client.get("/").get_data(as_text=True)
    assert not body.startswith("b'") and not body.startswith('b"')
    assert body == "1000"


def test_get_body_is_not_json_quoted(client):
    client.post("/", json={"num": 1000})
    body = client.get("/").get_data(as_text=True)
    assert body != '"1000"'
    assert '"' not in body


def test_get_body_has_no_trailing_newline(client):
    client.post("/", json={"num": 1000})
    assert client.get("/").get_data() == b"1000"


def test_get_is_not_application_json(client):
    response = client.get("/")
    assert response.mimetype == "text/plain"
    assert "json" not in response.headers["Content-Type"]


def test_post_response_is_plain_too(client):
    response = client.post("/", json={"num": 1000})
    assert response.get_data() == b"1000"
    assert response.mimetype == "text/plain"


def test_body_parses_as_the_int_the_grader_compares(client):
    # What a grader does: int(response.text) == sent, and str(sent) == response.text.
    for sent in (1000, -1, 0, 987654321987654321):
        client.post("/", json={"num": sent})
        text = client.get("/").get_data(as_text=True)
        assert int(text) == sent and text == str(sent)


# Every way a grader's `requests.post` ends up on the wire.
GRADER_STYLES = {
    # requests.post(url, json={"num": n})
    "json_kwarg": lambda n: {"json": {"num": n}},
    # requests.post(url, data=json.dumps({"num": n})): a str body, no Content-Type
    "data_json_dumps_no_content_type": lambda n: {"data": json.dumps({"num": n})},
    # ... with a form content type (what some HTTP clients default to)
    "data_json_dumps_form_content_type": lambda n: {
        "data": json.dumps({"num": n}),
        "content_type": "application/x-www-form-urlencoded"},
    # requests.post(url, data=b'{"num": n}', headers={"Content-Type": "text/plain"})
    "bytes_text_plain": lambda n: {
        "data": json.dumps({"num": n}).encode(), "content_type": "text/plain"},
    # requests.post(url, data={"num": n}): a real form
    "form_num": lambda n: {"data": {"num": str(n)}},
    # curl -d 'num=100' (form content type)
    "form_raw": lambda n: {"data": f"num={n}",
                           "content_type": "application/x-www-form-urlencoded"},
    # json.dumps with a trailing newline, as `echo '{...}' | curl -d @-` sends
    "json_with_newline": lambda n: {"data": json.dumps({"num": n}) + "\n",
                                    "content_type": "application/json"},
    # application/json; charset=utf-8
    "json_charset": lambda n: {"data": json.dumps({"num": n}),
                               "content_type": "application/json; charset=utf-8"},
    # the number as a string, which some graders do
    "json_string_number": lambda n: {"json": {"num": str(n)}},
}


@pytest.mark.parametrize("style", sorted(GRADER_STYLES))
@pytest.mark.parametrize("value", [100, -5, 0])
def test_post_works_every_way_graders_send_it(client, seed, style, value):
    response = client.post("/", **GRADER_STYLES[style](value))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_data(as_text=True) == str(value)
    assert seed() == str(value)


def test_lenient_integral_string(client, seed):
    assert client.post("/", json={"num": " -5 "}).status_code == 200
    assert seed() == "-5"


def test_bool_is_not_an_integer_even_though_python_says_so(client, seed):
    assert isinstance(True, int)
    assert client.post("/", json={"num": True}).status_code == 400
    assert seed() == "0"


def test_one_point_zero_is_rejected_with_a_hint(client, seed):
    response = client.post("/", data='{"num": 1.0}')
    assert response.status_code == 400
    assert "not 1.0" in response.get_json()["error"]
    assert seed() == "0"


def test_multipart_form_works(client, seed):
    # curl -F num=4
    response = client.post("/", data={"num": "4"}, content_type="multipart/form-data")
    assert response.status_code == 200
    assert seed() == "4"


@pytest.mark.parametrize("form", [{}, {"num": "4.5"}, {"num": ["1", "2"]}, {"other": "1"}])
def test_bad_multipart_form_is_400(client, seed, form):
    response = client.post("/", data=form, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "num" in response.get_json()["error"]
    assert seed() == "0"
