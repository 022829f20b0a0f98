"""Progress lines with elapsed time, shared by every long-running command."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `[  12.3s] message` lines, timed from when it was created."""

    def __init__(self, stream=None):
        self.started = time.monotonic()
        self.stream = stream or sys.stdout

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        # One write per line: a thread's progress line never lands inside another's.
        print(f"[{self.elapsed:6.1f}s] {message}\n", end="", file=self.stream, flush=True)


def quiet(_message: str) -> None:
    """Progress that says nothing (the default where a caller may want the lines)."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
