"""`local down`'s last check: is anything of the testbed's still listening? A port the
testbed let go may at once be taken by another program: that is no leftover, and `down`
must not fail for it. (Seen twice in CI: `local down` failing with "still listening after
down: 127.0.0.1:33425" while another xdist worker held the port. That worker's process was
older than `down`, so telling programs apart by start time was not enough: what counts is
whether the listener is in a process group the testbed started.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from infra.local.processes import listening
from infra.local.runtime import Meta
from infra.local.teardown import _still_listening

# A server that forks a worker to listen and exits: the worker keeps the session's group.
FORKING_SERVER = (
    "import os, socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "if os.fork() == 0:\n"
    "    time.sleep(120)\n"
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ss")


def test_a_worker_in_a_group_the_testbed_started_is_reported_an_older_stranger_is_not():
    # The stranger: this test's own process, older than any `down`, as the xdist worker was.
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", 0))
    stranger.listen()
    stranger_address = f"127.0.0.1:{stranger.getsockname()[1]}"
    leader = subprocess.Popen([sys.executable, "-c", FORKING_SERVER], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        port = int(leader.stdout.readline())
        ours = f"127.0.0.1:{port}"
        leader.wait(timeout=10)  # the leader is gone; its forked worker still listens
        assert listening("127.0.0.1", port)
        meta = Meta(stack="t", mode="up", owner_pid=0, lb=ours, admin=stranger_address)
        assert _still_listening(meta, {leader.pid}) == [ours]
        # Had the testbed started nothing of the kind, neither is its leftover.
        assert _still_listening(meta, {leader.pid + 10**6}) == []
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stranger.close()
