"""Children that a test interrupts must take SIGINT however the suite was started.

A background job of a non-interactive shell (`make test &` in a script) starts with SIGINT
ignored, and every child inherits that: a test's Ctrl-C would then never arrive. Each
subprocess a test sends SIGINT gets `preexec_fn=sigint_default`.
"""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """In the child, before exec: SIGINT back to its default (Python then raises
    KeyboardInterrupt on it, as in a terminal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
