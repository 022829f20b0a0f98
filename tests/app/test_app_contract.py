"""The HTTP contract of the seed app, through Flask's test client."""

from __future__ import annotations

import io
import json
import pathlib
import socket

import pytest

import app as app_package
from app import MAX_BODY, create_app
from app.parsing import MAX_DIGITS

INSTANCE_ID = "i-0123456789abcdef0"  # what conftest's make_app configures
APP_DIR = pathlib.Path(app_package.__file__).parent


def test_seed_starts_at_zero(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.get_data() == b"0"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("value", [100, -7, 0, 2**64 + 1, -(10**4299)])
def test_post_sets_seed_and_returns_it_plain(client, seed, value):
    response = client.post("/", json={"num": value})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.get_data(as_text=True) == str(value)
    assert seed() == str(value)


def test_last_post_wins(client, seed):
    for value in (1, 2, -3, 40):
        client.post("/", json={"num": value})
    assert seed() == "40"


def test_largest_accepted_seed_has_max_digits(client, seed):
    biggest = "9" * MAX_DIGITS
    response = client.post("/", data=f'{{"num": -{biggest}}}')
    assert response.status_code == 200
    assert seed() == "-" + biggest


def test_one_digit_too_many_is_400_not_500(client, seed):
    response = client.post("/", data='{"num": 1' + "0" * MAX_DIGITS + "}")
    assert response.status_code == 400
    assert f"at most {MAX_DIGITS}" in response.get_json()["error"]
    assert seed() == "0"


def test_rejection_is_json_with_reason(client):
    response = client.post("/", json={"num": True})
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert "boolean" in response.get_json()["error"]


def test_health_is_200_and_changes_nothing(client, seed):
    client.post("/", json={"num": 5})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_data() == b"ok"
    assert seed() == "5"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(client, seed, method):
    response = client.open("/", method=method, json={"num": 9})
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "error" in response.get_json()
    assert seed() == "0"


def test_health_rejects_post_with_405(client):
    response = client.post("/health")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_head_returns_no_body(client):
    response = client.head("/")
    assert response.status_code == 200
    assert response.get_data() == b""


def test_unknown_path_is_404_json(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_body_over_limit_is_413_and_seed_unchanged(client, seed):
    body = json.dumps({"num": 1, "pad": "x" * MAX_BODY}).encode()
    response = client.post("/", data=body)
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert seed() == "0"


def test_body_just_under_limit_is_parsed(client, seed):
    body = b'{"num": 12}' + b" " * (MAX_BODY - 20)
    assert client.post("/", data=body).status_code == 200
    assert seed() == "12"


# What gunicorn and granian set for a chunked body: the server ends the stream.
CHUNKED = {"wsgi.input_terminated": True}


def test_chunked_body_over_limit_is_413_not_truncated(client, seed):
    # No Content-Length: Werkzeug would stop at the limit and hand over a truncated body,
    # which here would still be a valid {"num": 3}.
    body = b'{"num": 3}' + b" " * (MAX_BODY + 10)
    response = client.post("/", input_stream=io.BytesIO(body),
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides=CHUNKED)
    assert response.status_code == 413
    assert seed() == "0"


def test_chunked_small_body_is_accepted(client, seed):
    response = client.post("/", input_stream=io.BytesIO(b'{"num": 31}'),
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides=CHUNKED)
    assert response.status_code == 200
    assert seed() == "31"


@pytest.mark.parametrize("terminated", [True, False], ids=["gunicorn-like", "werkzeug-like"])
@pytest.mark.parametrize(("body", "declared"), [(b"num=12", 9), (b'{"num": 7}', 20),
                                                (b"", 5)])
def test_body_shorter_than_its_content_length_is_400(client, seed, body, declared, terminated):
    # gunicorn (wsgi.input_terminated) hands over what arrived as if whole; without that
    # flag Werkzeug's LimitedStream raises ClientDisconnected. Both are one 400.
    client.post("/", json={"num": 41})
    environ = {"CONTENT_LENGTH": str(declared), **(CHUNKED if terminated else {})}
    response = client.post("/", input_stream=io.BytesIO(body), environ_overrides=environ,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert f"before the {declared} bytes its Content-Length announced" in \
        response.get_json()["error"]
    assert response.headers["X-Served-By"] == INSTANCE_ID
    assert seed() == "41"


def test_multipart_form_still_parsed_after_the_body_is_read_first(client, seed):
    # The body is read (and cached) before the form parser sees it.
    response = client.post("/", data={"num": "-8"}, content_type="multipart/form-data")
    assert (response.status_code, seed()) == (200, "-8")


def test_limit_is_configurable(make_app):
    client = make_app(MAX_CONTENT_LENGTH=16).test_client()
    assert client.post("/", data='{"num": 1}').status_code == 200
    assert client.post("/", data='{"num": 1}' + " " * 20).status_code == 413


@pytest.mark.parametrize(
    "request_args",
    [
        {"method": "GET", "path": "/"},
        {"method": "POST", "path": "/", "json": {"num": 1}},
        {"method": "GET", "path": "/health"},
        {"method": "POST", "path": "/", "data": b"junk"},  # 400
        {"method": "GET", "path": "/missing"},  # 404
        {"method": "DELETE", "path": "/"},  # 405
        {"method": "POST", "path": "/", "data": b"x" * (MAX_BODY + 1)},  # 413
        {"method": "HEAD", "path": "/"},
        {"method": "OPTIONS", "path": "/"},
    ],
)
def test_every_response_names_the_instance(client, request_args):
    args = dict(request_args)
    response = client.open(args.pop("path"), method=args.pop("method"), **args)
    assert response.headers["X-Served-By"] == INSTANCE_ID


def test_500_names_the_instance_and_logs_the_traceback(make_app, caplog):
    app = make_app(TESTING=False)  # let Flask turn the exception into a 500

    def broken():
        raise RuntimeError("boom")

    app.extensions["seed_store"].get_text = broken
    response = app.test_client().get("/")
    assert response.status_code == 500
    assert response.headers["X-Served-By"] == INSTANCE_ID
    assert "error" in response.get_json()
    # Flask logs it with the traceback; under python -m app that record goes to stderr.
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info and record.exc_info[0] is RuntimeError


def test_instance_id_comes_from_environment(monkeypatch):
    monkeypatch.setenv("INSTANCE_ID", "i-from-env")
    monkeypatch.delenv("SEED_FILE", raising=False)
    app = create_app({"TESTING": True})
    assert app.test_client().get("/").headers["X-Served-By"] == "i-from-env"


def test_host_name_when_no_instance_id(monkeypatch):
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    monkeypatch.delenv("SEED_FILE", raising=False)
    app = create_app({"TESTING": True})
    assert app.test_client().get("/").headers["X-Served-By"] == socket.gethostname()


def test_config_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("INSTANCE_ID", "i-from-env")
    app = create_app({"TESTING": True, "INSTANCE_ID": "i-from-config", "SEED_FILE": None})
    assert app.test_client().get("/").headers["X-Served-By"] == "i-from-config"


def test_app_never_mentions_the_metadata_service():
    # The instance id is passed in by the user data; the app itself never asks for it.
    source = "".join(p.read_text() for p in APP_DIR.glob("*.py"))
    assert "169.254.169.254" not in source
    assert "latest/meta-data" not in source


def _requirement_names(package: str) -> set[str]:
    """The packages `package` needs at run time (no extras), from its installed metadata."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    needed = set()
    for line in requires(package) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            needed.add(req.name.lower().replace("_", "-"))
    return needed


def test_requirements_pin_the_whole_tree_as_the_lock_does():
    def pins(path):
        # a pin starts its line; the lock's hash, marker and `# via` lines are not pins
        lines = [line.split(";")[0].split(" ")[0] for line in path.read_text().splitlines()
                 if line.strip() and not line[0].isspace() and not line.startswith("#")]
        return dict(line.lower().replace("_", "-").split("==") for line in lines)

    instance = pins(APP_DIR / "requirements.txt")
    lock = pins(APP_DIR.parent / "requirements.lock")
    assert {"flask", "granian", "werkzeug"} <= instance.keys()
    # Every package an instance installs is pinned, at the version the tests ran.
    assert {name: lock.get(name) for name in instance} == instance
    # ... and nothing it needs is left to pip's choice: the closure of the requirements.
    closure, todo = set(), ["flask", "granian"]
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(_requirement_names(name))
    assert closure == set(instance)
