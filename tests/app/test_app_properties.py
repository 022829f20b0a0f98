"""Property tests: whatever the body, POST / never answers 5xx, and a rejection changes nothing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.parsing import MAX_DIGITS

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
# Integers stay within Python's str conversion limit (hypothesis itself prints them);
# longer ones are built as text in test_long_numbers.
BIGGEST = 10**MAX_DIGITS - 1
num_values = (json_values | st.integers(min_value=-BIGGEST, max_value=BIGGEST)
              | st.from_regex(r"\s*[+-]?[0-9]{1,30}\s*", fullmatch=True)
              | st.text(alphabet="0123456789+-. eE_", max_size=12))
bodies = st.one_of(
    st.builds(lambda v: {"num": v}, num_values),
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    json_values,
)
content_types = st.sampled_from([None, "application/json", "text/plain",
                                 "application/x-www-form-urlencoded", "application/octet-stream",
                                 "multipart/form-data"])


@pytest.fixture(scope="module")
def shared_client():
    # One app for all examples (a fresh one per example would be slow); the seed is reset
    # to a known value before each example.
    app = create_app({"TESTING": True, "INSTANCE_ID": "i-prop", "SEED_FILE": None})
    yield app.test_client()
    app.extensions["seed_store"].close()


def _expected(body) -> int | None:
    """The seed this JSON body should set, or None if it must be rejected."""
    if not isinstance(body, dict) or "num" not in body:
        return None
    num = body["num"]
    if isinstance(num, bool):
        return None
    if isinstance(num, int):
        return num if len(str(abs(num))) <= MAX_DIGITS else None
    if isinstance(num, str):
        text = num.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS:
            return int(text)
    return None


def _post(client, data: bytes, content_type):
    kwargs = {"data": data}
    if content_type:
        kwargs["content_type"] = content_type
    return client.post("/", **kwargs)


@FAST
@given(body=bodies, content_type=content_types)
def test_any_json_body(shared_client, body, content_type):
    shared_client.post("/", json={"num": 31337})
    data = json.dumps(body).encode()
    response = _post(shared_client, data, content_type)
    assert response.status_code < 500
    after = shared_client.get("/").get_data(as_text=True)
    expected = _expected(body)
    if content_type == "multipart/form-data":
        # no multipart boundary: never a seed
        expected = None
    if expected is None:
        assert response.status_code in (400, 413)
        assert "error" in response.get_json()
        assert after == "31337"
    else:
        assert response.status_code == 200
        assert after == str(expected) == response.get_data(as_text=True)


@FAST
@given(data=st.binary(max_size=300), content_type=content_types)
def test_any_bytes(shared_client, data, content_type):
    shared_client.post("/", json={"num": 31337})
    response = _post(shared_client, data, content_type)
    assert response.status_code < 500
    after = shared_client.get("/").get_data(as_text=True)
    if response.status_code == 200:
        assert after == response.get_data(as_text=True)
        int(after)
    else:
        assert response.status_code == 400
        assert "error" in response.get_json()
        assert after == "31337"


@FAST
@given(value=st.integers(min_value=-BIGGEST, max_value=BIGGEST),
       style=st.sampled_from(["json", "string", "form"]))
def test_every_integer_up_to_the_limit_round_trips(shared_client, value, style):
    if style == "json":
        response = shared_client.post("/", json={"num": value})
    elif style == "string":
        response = shared_client.post("/", json={"num": f" {value} "})
    else:
        response = shared_client.post("/", data={"num": str(value)})
    assert response.status_code == 200
    assert shared_client.get("/").get_data(as_text=True) == str(value)


@FAST
@given(digits=st.integers(min_value=MAX_DIGITS - 3, max_value=MAX_DIGITS + 100),
       sign=st.sampled_from(["", "-"]), quoted=st.booleans())
def test_long_numbers(shared_client, digits, sign, quoted):
    shared_client.post("/", json={"num": 31337})
    number = sign + "9" * digits
    data = f'{{"num": "{number}"}}' if quoted else f'{{"num": {number}}}'
    response = shared_client.post("/", data=data)
    after = shared_client.get("/").get_data(as_text=True)
    if digits <= MAX_DIGITS:
        assert response.status_code == 200
        assert after == number
    else:
        assert response.status_code == 400
        assert after == "31337"
