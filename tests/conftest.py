"""Guards for the whole suite: fake AWS credentials, and no traffic off this machine.

Every socket connection and every name lookup is checked: only loopback
(127.0.0.0/8, ::1, localhost) is allowed. A test that would reach real AWS, the
instance metadata service or anything else fails loudly instead.
"""

from __future__ import annotations

import contextlib
import functools
import socket

import pytest
import schedule
from offmachine import guarded_connect, guarded_connect_ex, guarded_getaddrinfo

from infra.local.processes import held_port

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
    _share_botocore_data_files(mp)
    config._seedlb_guard = mp


def _share_botocore_data_files(mp: pytest.MonkeyPatch) -> None:
    """Each boto3 session parses botocore's service models again (ec2's is 2 MB of JSON):
    about a tenth of the suite's CPU, with hundreds of sessions. The files never change
    during a run, so this process parses each one once. botocore already hands one parsed
    model to every client of a session; now every session shares it the same way."""
    from botocore.loaders import JSONFileLoader

    reader = JSONFileLoader()
    parse = functools.cache(reader.load_file)  # by path alone: the reader holds no state
    mp.setattr(JSONFileLoader, "load_file", lambda self, file_path: parse(file_path))


def pytest_collection_modifyitems(config, items):
    seconds = config.cache.get(schedule.CACHE_KEY, {}) if config.cache else {}
    items[:] = schedule.longest_first(items, seconds,
                                      lambda item: item.get_closest_marker("long") is not None)


_durations: list[tuple[str, float]] = []  # (nodeid, seconds) of each phase of each test


def pytest_runtest_logreport(report):
    # In xdist's controller (or a run without xdist): every phase of every test, once.
    _durations.append((report.nodeid, report.duration))


def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workerinput") or not config.cache or not _durations:
        return  # a worker: the controller keeps the times
    before = config.cache.get(schedule.CACHE_KEY, {})
    config.cache.set(schedule.CACHE_KEY, schedule.measured(_durations, before))


def pytest_unconfigure(config):
    guard = getattr(config, "_seedlb_guard", None)
    if guard is not None:
        guard.undo()


@pytest.fixture
def free_port():
    """A free TCP port on 127.0.0.1, held until the test ends (tests/ports.py): bound with
    SO_REUSEADDR and SO_REUSEPORT, never listening, so the test's server can still take it
    and nothing else can, and a connection to it is refused until a server listens."""
    with held_port() as port:
        yield port


@contextlib.contextmanager
def _running_moto_server():
    from moto.server import ThreadedMotoServer

    # Port 0: the server binds a free port itself, and says which (no gap for another test).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
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

