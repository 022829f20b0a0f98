"""What Ctrl-C (SIGINT) and SIGTERM do while a command starts and stops the testbed's
processes.

A command makes one `Interrupts`, installs it for its run (`sigterm_as_interrupt`), and hands
it to the testbeds and process groups it drives (`Testbed(interrupts=...)`,
`ProcessGroup(..., interrupts)`): they read the same object, and no module keeps one of its
own. One that is never installed changes nothing: Python's own Ctrl-C, no grace cut short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator


class Interrupts:
    """What SIGINT (Ctrl-C) and SIGTERM do while the testbed's processes start and stop.

    The first one raises KeyboardInterrupt: the command stops what it does and cleans up.
    Clean-up must stop every process that was started, so from then on a signal no longer
    raises: it hurries the clean-up instead (grace periods end, SIGKILL at once), and cuts
    short only what is marked `cuttable` (destroying the stack in moto, moot once moto
    stops). Starting a child and writing its pid file is never split by a signal, so no
    child goes unrecorded. Only the main thread receives signals, so only it counts here.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.hurry = threading.Event()  # set: stop everything now, no grace periods
        self._installed = 0
        self._reset()

    def _reset(self) -> None:
        self.hurry.clear()
        self._raised = False
        self._cleaning = 0
        self._cuttable = 0
        self._deferring = 0
        self._pending = False
        self._announced = False

    @property
    def interrupted(self) -> bool:
        """A signal came since the handler was last installed."""
        return self._raised or self.hurry.is_set()

    @staticmethod
    def _main_thread() -> bool:
        return threading.current_thread() is threading.main_thread()

    def _live(self) -> bool:
        """A signal would reach this handler here: the main thread, the handler installed."""
        return self._main_thread() and bool(self._installed)

    def _handle(self, signum, frame) -> None:
        if self._cuttable:
            self.hurry.set()
            raise KeyboardInterrupt
        if self._cleaning or self._raised:
            self.hurry.set()
            self._announce()
            return
        if self._deferring:
            self._pending = True
            return
        self._raised = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise the KeyboardInterrupt of a signal whose exception was lost: Python drops an
        exception raised inside a weakref finalizer or a __del__ ("Exception ignored in")."""
        if self._raised and self._main_thread():
            raise KeyboardInterrupt

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        # os.write, not print: a handler that prints can land inside another print.
        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stderr.fileno(), b"interrupted during clean-up: stopping every "
                                          b"process of the testbed now (SIGKILL)\n")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The handler above for SIGINT and SIGTERM, the previous ones put back after."""
        if not self._main_thread():
            yield
            return
        if self._installed:
            self._installed += 1
            try:
                yield
            finally:
                self._installed -= 1
            return
        self._reset()
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        self._installed = 1
        try:
            yield
        finally:
            self._installed = 0
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def _counted(self, counter: str) -> Iterator[None]:
        """One more level of `counter` (_cleaning, _cuttable, _deferring) while inside."""
        setattr(self, counter, getattr(self, counter) + 1)
        try:
            yield
        finally:
            setattr(self, counter, getattr(self, counter) - 1)

    @contextlib.contextmanager
    def cleaning(self) -> Iterator[None]:
        """Clean-up: signals hurry it instead of interrupting it (installs the handler)."""
        if not self._main_thread():
            yield
            return
        with self.installed(), self._counted("_cleaning"):
            yield

    @contextlib.contextmanager
    def cuttable(self) -> Iterator[None]:
        """Part of a clean-up that a signal may cut short (KeyboardInterrupt)."""
        if self._live() and self.hurry.is_set():
            raise KeyboardInterrupt  # already asked to hurry: skip it
        with self._counted("_cuttable") if self._live() else contextlib.nullcontext():
            yield

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """No KeyboardInterrupt inside; one that came meanwhile is raised at the end."""
        live = self._live()
        with self._counted("_deferring") if live else contextlib.nullcontext():
            yield
        if live and not self._deferring and self._pending:
            self._pending = False
            self._raised = True
            raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt(interrupts: Interrupts) -> Iterator[Interrupts]:
    """A command's run with `interrupts` installed: `kill <pid>` cleans up like Ctrl-C does,
    and a second Ctrl-C (or kill) during that clean-up hurries it rather than leaving
    processes behind. Pass the same object to the testbeds the command drives."""
    try:
        with interrupts.installed():
            yield interrupts
    finally:
        if interrupts.interrupted and threading.current_thread() is threading.main_thread():
            # The command ends because of it, its clean-up done: one more Ctrl-C could only
            # turn its exit code 130 into a traceback.
            for sig in interrupts.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
