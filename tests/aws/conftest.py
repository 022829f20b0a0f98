"""Fixtures for the provisioning tests: moto in process and fast settings (the moto server
fixtures are the suite's own, in tests/conftest.py)."""

from __future__ import annotations

import pytest
from moto import mock_aws
from provision_helpers import REGION, STACK

from infra.aws.clients import Clients, Target
from infra.config import Settings


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
