"""`local down`'s last check: is anything of the testbed's still listening? A port the
testbed let go may at once be taken by a program started since (another test's server on a
busy machine): that is no leftover, and `down` must not fail for it. One that was already
running when `down` began is reported. (Seen: `make local-down` failing with "still
listening after down: 127.0.0.1:38091" while another xdist worker's server held the port.)"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from infra.local.processes import boot_ticks, listening
from infra.local.runtime import Meta
from infra.local.teardown import _still_listening

SERVER = ("import socket, sys, time\n"
          "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
          "print(s.getsockname()[1], flush=True); time.sleep(120)\n")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ss")


def listener() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())  # printed once it listens
    assert listening("127.0.0.1", port)
    return proc, f"127.0.0.1:{port}"


def test_a_listener_from_before_down_is_reported_one_started_since_is_not():
    old, old_address = listener()
    try:
        time.sleep(0.05)  # a clock tick (10 ms) between the old server's start and `down`
        began = boot_ticks()
        time.sleep(0.05)
        new, new_address = listener()
        try:
            meta = Meta(stack="t", mode="up", owner_pid=0, lb=old_address, admin=new_address)
            assert _still_listening(meta, began) == [old_address]
        finally:
            new.kill()
            new.wait()
    finally:
        old.kill()
        old.wait()
