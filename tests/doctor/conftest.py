"""Fixtures for the doctor's tests: moto in process, the project's clients, a healthy
hand-built stack (see doctor_seed.py).

One moto backend per test module (starting one costs seconds); each test gets its own
fresh stack in its own VPC with unique names, so tests cannot see each other's faults.
"""

from __future__ import annotations

import itertools

import boto3
import pytest
from doctor_seed import HEALTH_EVENT, HEALTH_HOOK_ID, REGION, any_ami, build_seed_stack
from moto import mock_aws

from infra.aws.clients import Clients, Target

_stack_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def aws():
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        builder = (session.client("ec2"), session.client("elbv2"))
        yield {"ami": any_ami(builder[0]), "builder": builder}


@pytest.fixture(scope="module")
def module_clients(aws):
    """The project's clients; mock_aws intercepts them in process. There is no endpoint
    URL, which resolve_target's loopback guard would refuse: build the Target directly.
    (Making clients costs a lot of CPU on this shared machine: one set per module.)"""
    return Clients(Target(region=REGION, endpoint_url=None))


@pytest.fixture
def clients(module_clients):
    yield module_clients
    # an injected DescribeTargetHealth answer must not leak into the next test
    module_clients.elbv2.meta.events.unregister(HEALTH_EVENT, unique_id=HEALTH_HOOK_ID)


@pytest.fixture
def seed(aws, clients):
    """The healthy hand-built stack, made with a separate plain boto3 session."""
    ec2, elbv2 = aws["builder"]
    return build_seed_stack(ec2, elbv2, suffix=f"-{next(_stack_numbers)}", ami=aws["ami"])
