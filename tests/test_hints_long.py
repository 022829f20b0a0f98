"""The printed and documented commands that start or stop whole testbeds, or take a while:
`make test-local`, `make local-up` / `make local-down` (also with STACK=), `make test-faults`,
a bench step. Each runs as printed in a fresh shell under the loopback guard; only the load
balancer's port and the instances' addresses change, to free ones, where the command's
defaults would meet another testbed on this machine (`make test-faults` picks its own).
"""

from __future__ import annotations

import re

import pytest
from fresh_shell import Shell
from hints import Command, doc_commands, source_hints
from hints_run import Bed, classify, ran_ok, random_first_address

from infra.local.processes import listening

pytestmark = [pytest.mark.integration, pytest.mark.long]

LONG = [c for c in source_hints() + doc_commands() if classify(c) == "long"]
TEXTS = sorted({c.text for c in LONG})


def with_free_addresses(text: str, port: int, first: str) -> str:
    return re.sub(r"^make (local-up|test-local)$",
                  rf"make \1 ARGS='--lb-port {port} --first-address {first}'", text)


def test_every_long_command_is_run_here():
    """The list below is LONG's, kept in step with what the docs and messages print."""
    known = {"make test-local", "make local-up", "make local-down", "make test-faults",
             "make local-down STACK={local.stack}", "make local-down STACK={status['stack']}",
             ".venv/bin/python -m infra bench --only badinput"}
    assert set(TEXTS) <= known, set(TEXTS) - known


def test_make_test_local_as_printed(tmp_path, free_port):
    shell = Shell(tmp_path)
    port = free_port
    done = shell.run(with_free_addresses("make test-local", port, random_first_address()),
                     timeout=300)
    assert done.returncode == 0 and "PASS  make test-local" in done.stdout, \
        done.stdout[-3000:] + done.stderr
    assert shell.off_machine() == ""
    assert not listening("127.0.0.1", port)


@pytest.mark.parametrize("down", ["make local-down", "make local-down STACK=seed-lb-local"])
def test_make_local_up_then_down_as_printed(tmp_path, down):
    """`make local-down` and the STACK= form status prints both stop the README's testbed."""
    with Bed(tmp_path) as bed:
        done = bed.shell.run(down)
        assert ran_ok(Command(down, "docs"), done), done.stdout + done.stderr
        assert not listening("127.0.0.1", bed.port)
        assert bed.shell.run("make -s local-status").returncode != 0  # nothing left
        assert bed.shell.off_machine() == ""


def test_make_test_faults_as_printed(tmp_path):
    """The target as printed, on lanes with ports and addresses of their own choosing, with
    two quick faults: every fault's round trip is tests/local/test_faults.py's (the same
    run_all, in process), and two full rosters side by side would overload make test's two
    cores. The booted fault is make test-boot's, as in make test."""
    shell = Shell(tmp_path)
    done = shell.run("make test-faults ARGS='lb-sg-no-80 no-listener'", timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^PASS  2 of 2 faults round-trip", done.stdout, flags=re.M), done.stdout
    assert shell.off_machine() == ""


def test_one_bench_step_as_printed(tmp_path):
    shell = Shell(tmp_path)
    done = shell.run(".venv/bin/python -m infra bench --only badinput", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "docs not written" in done.stdout
    assert shell.off_machine() == ""
