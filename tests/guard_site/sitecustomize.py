"""The suite's loopback guard (tests/offmachine.py) inside every Python process that a
command started by a test runs: `PYTHONPATH=tests/guard_site` (guarded_env() in
tests/fresh_shell.py). Python imports this module at start-up, before the command's own code.

A connection or a name lookup off this machine raises, as in the suite, and is first written
to $SEEDLB_OFFMACHINE_LOG, which the test reads: a command that swallowed the exception
still shows up there.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import offmachine  # noqa: E402 - tests/, just put on the path

sys.path.pop(0)


def _logged(guarded):
    def check(*args, **kwargs):
        try:
            return guarded(*args, **kwargs)
        except offmachine.OffMachineTraffic as exc:
            log = os.environ.get("SEEDLB_OFFMACHINE_LOG")
            if log:
                with open(log, "a") as out:
                    out.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}: {exc}\n")
            raise
    return check


socket.socket.connect = _logged(offmachine.guarded_connect)
socket.socket.connect_ex = _logged(offmachine.guarded_connect_ex)
socket.getaddrinfo = _logged(offmachine.guarded_getaddrinfo)
