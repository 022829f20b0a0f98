"""A real local testbed (moto server, app processes, Caddy) on free ports and random loopback
addresses, so that it never meets a developer's own testbed on 8080 / 127.0.0.11:5000."""

from __future__ import annotations

import random

import pytest

from infra.local.processes import free_port
from infra.local.testbed import Testbed


def random_first_address() -> str:
    rng = random.Random()
    return f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.11"


def make_testbed(tmp_path, **overrides) -> Testbed:
    options = {
        "lb_port": free_port(),
        "runtime_dir": tmp_path / "runtime",
        "state_dir": tmp_path / "state",
        "first_address": random_first_address(),
        "instance_port": free_port(),
    }
    options.update(overrides)
    stack = options.pop("stack", f"lt-{random.Random().randrange(16**6):06x}")
    return Testbed(stack, **options)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    """One running testbed shared by a module's tests; always torn down."""
    bed = make_testbed(tmp_path_factory.mktemp("testbed"))
    bed.up()
    try:
        yield bed
    finally:
        bed.down()


@pytest.fixture
def new_testbed(tmp_path):
    """A factory of testbeds in this test's tmp dir; whatever a test leaves is torn down."""
    made: list[Testbed] = []

    def factory(**overrides) -> Testbed:
        bed = make_testbed(tmp_path, **overrides)
        made.append(bed)
        return bed

    yield factory
    for bed in made:
        bed.down()
