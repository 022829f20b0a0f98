"""A real local testbed (moto server, app processes, Caddy) on free ports and random loopback
addresses, so that it never meets a developer's own testbed on 8080 / 127.0.0.11:5000."""

from __future__ import annotations

import contextlib
import random

import pytest

from infra.local.processes import held_port
from infra.local.testbed import Testbed


def random_first_address() -> str:
    rng = random.Random()
    return f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.11"


def make_testbed(tmp_path, ports: contextlib.ExitStack, **overrides) -> Testbed:
    """A testbed whose ports are held (tests/ports.py) until `ports` closes: Caddy and the
    apps can bind them, another test cannot take them in between."""
    first = overrides.get("first_address") or random_first_address()
    options = {
        "lb_port": ports.enter_context(held_port()),
        "runtime_dir": tmp_path / "runtime",
        "state_dir": tmp_path / "state",
        "first_address": first,
        "instance_port": ports.enter_context(held_port(first)),
    }
    options.update(overrides)
    stack = options.pop("stack", f"lt-{random.Random().randrange(16**6):06x}")
    return Testbed(stack, **options)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    """One running testbed shared by a module's tests; always torn down."""
    with contextlib.ExitStack() as ports:
        bed = make_testbed(tmp_path_factory.mktemp("testbed"), ports)
        bed.up()
        try:
            yield bed
        finally:
            bed.down()


@pytest.fixture
def new_testbed(tmp_path):
    """A factory of testbeds in this test's tmp dir; whatever a test leaves is torn down."""
    made: list[Testbed] = []
    with contextlib.ExitStack() as ports:

        def factory(**overrides) -> Testbed:
            bed = make_testbed(tmp_path, ports, **overrides)
            made.append(bed)
            return bed

        yield factory
        for bed in made:
            bed.down()
