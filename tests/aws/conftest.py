"""Fixtures for the provisioning tests: moto in process and fast settings (the moto server
fixtures are the suite's own, in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from moto import mock_aws
from provision_helpers import REGION, STACK

from infra.aws.clients import Clients, Target
from infra.config import Settings
from infra.local.processes import held_port, listening, log_tail, wait_until


@pytest.fixture
def aws():
    """moto in process: Clients aimed at 'real AWS', intercepted by mock_aws."""
    with mock_aws():
        yield Clients(Target(REGION, None))


@pytest.fixture
def settings(tmp_path) -> Settings:
    # public_access is explicit: in-process moto looks like real AWS, and tests must never
    # look up the deployer's IP.
    return Settings.fast(stack=STACK, public_access="203.0.113.7/32", state_dir=str(tmp_path))


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on, held until the test ends: a connection to it is
    refused, and no other test (xdist) can start a server on it meanwhile."""
    with held_port() as port:
        yield port


@contextlib.contextmanager
def _moto_process(tmp_path):
    """A moto server in a process of its own: its accounts are its own (in-process moto
    servers share one backend per test process), and so are its IAM-enforcement globals.
    Its port is held until the server binds it (werkzeug binds with SO_REUSEADDR)."""
    log_path = tmp_path / "moto.log"
    with held_port() as port, open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            up = wait_until(lambda: proc.poll() is not None or listening("127.0.0.1", port), 60)
            if not up or proc.poll() is not None:
                raise RuntimeError(f"moto server did not start: {log_tail(log_path)}")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def moto_process(tmp_path):
    """The endpoint of a moto server process of this test's own."""
    with _moto_process(tmp_path) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def module_moto_process(tmp_path_factory):
    """One moto server process for a module's tests (each uses its own users and stacks)."""
    with _moto_process(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint
