"""Fixtures for the app's tests: a fresh app (memory-only seed), its test client, and real
servers (`start_server`)."""

from __future__ import annotations

import pytest
from app_servers import Server

from app import create_app

INSTANCE_ID = "i-0123456789abcdef0"


@pytest.fixture
def make_app():
    """create_app with test defaults; every app made is closed afterwards."""
    made = []

    def make(**config):
        app = create_app({"TESTING": True, "INSTANCE_ID": INSTANCE_ID, "SEED_FILE": None,
                          **config})
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["seed_store"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seed(client):
    """seed() -> the body of GET / (asserting it is a 200)."""

    def read() -> str:
        response = client.get("/")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    return read


@pytest.fixture
def start_server(tmp_path):
    started: list[Server] = []

    def start(port: int, *args: str, env: dict | None = None, wait: bool = True,
              argv: list[str] | None = None) -> Server:
        server = Server(tmp_path, port, *args, env=env, argv=argv)
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()


