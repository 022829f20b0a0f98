"""What Ctrl-C does belongs to the command that installed it: one Interrupts per command,
handed to its testbeds and process groups, and none kept by a module.

The signals here are real (signal.raise_signal: the handler runs before it returns), and
the test's own handlers are put back after each test."""

from __future__ import annotations

import signal

import pytest

from infra.local import processes
from infra.local.interrupts import Interrupts, sigterm_as_interrupt
from infra.local.processes import ProcessGroup
from infra.local.testbed import Testbed


@pytest.fixture
def own_handlers():
    """sigterm_as_interrupt ignores further signals after an interrupted run (the command
    ends): put the test process's handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in Interrupts.SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_no_module_keeps_an_interrupts_of_its_own():
    import infra.local.interrupts as module

    for mod in (module, processes):
        assert not [name for name, value in vars(mod).items() if isinstance(value, Interrupts)]


def test_a_testbed_and_its_processes_share_the_command_s_interrupts(tmp_path):
    command = Interrupts()
    bed = Testbed("unit", runtime_dir=tmp_path / "a", interrupts=command)
    assert bed.interrupts is command and bed.processes.interrupts is command
    other = Testbed("unit", runtime_dir=tmp_path / "b")
    assert other.interrupts is not command and other.processes.interrupts is other.interrupts


def test_a_signal_reaches_only_the_installed_one(own_handlers):
    installed, bystander = Interrupts(), Interrupts()
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt(installed):
        signal.raise_signal(signal.SIGTERM)  # its handler runs before this call returns
        raise AssertionError("the signal did not interrupt the run")
    assert installed.interrupted and not bystander.interrupted
    # The command is over: one more Ctrl-C could only turn its exit code into a traceback.
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_during_clean_up_a_signal_hurries_instead(own_handlers, tmp_path):
    command = Interrupts()
    group = ProcessGroup(tmp_path, command)
    with sigterm_as_interrupt(command), command.cleaning():
        signal.raise_signal(signal.SIGINT)
        assert group.interrupts.hurry.is_set()  # the group's waits end at once now


def test_one_never_installed_changes_nothing(tmp_path):
    idle = Interrupts()
    with idle.deferred(), idle.cuttable():
        pass
    assert not idle.interrupted and not idle.hurry.is_set()
