"""Guards for the whole suite: fake AWS credentials, and no traffic off this machine.

Every socket connection and every name lookup is checked: only loopback
(127.0.0.0/8, ::1, localhost) is allowed. A test that would reach real AWS, the
instance metadata service or anything else fails loudly instead.
"""

from __future__ import annotations

import contextlib
import socket

import pytest
from offmachine import guarded_connect, guarded_connect_ex, guarded_getaddrinfo

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SEEDLB_LOOPBACK_ONLY": "1",
}


def pytest_configure(config):
    # Before any test module imports boto3, so no client ever sees real credentials.
    mp = pytest.MonkeyPatch()
    for key, value in FAKE_AWS_ENV.items():
        mp.setenv(key, value)
    mp.delenv("AWS_PROFILE", raising=False)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    mp.setattr(socket.socket, "connect", guarded_connect)
    mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    config._seedlb_guard = mp


def pytest_unconfigure(config):
    guard = getattr(config, "_seedlb_guard", None)
    if guard is not None:
        guard.undo()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A free TCP port on 127.0.0.1 (bind to 0, read it back)."""
    return _free_port()


@contextlib.contextmanager
def _running_moto_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_server():
    """A moto server of the test's own on a free loopback port: its endpoint URL."""
    with _running_moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def module_moto_server():
    """One moto server shared by a module's tests (each uses its own stack): its endpoint."""
    with _running_moto_server() as endpoint:
        yield endpoint
