"""Ctrl-C during `make test-boot` leaves nothing behind: no namespace, veth, route, mount,
cgroup, nftables table (they live in the namespaces) or process.

`python -m infra local test-boot` (what `make test-boot` runs) is started as a user starts
it, and its process group gets SIGINT, as a terminal's Ctrl-C sends it, 2, 10 and 30 s in:
building or checking the image and starting moto; booting the machines; grading or the
drill. Each run must end with exit code 130 and leave this machine as it found it.

Booting machines takes minutes, so these run in `make test-boot` (SEEDLB_BOOT_TESTS=1),
not in `make test`; and only where this machine can boot machines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.machines import backend, cgroups, image, network, testboot
from infra.local.processes import held_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _state(runtime: Path) -> dict:
    left = network.leftovers()
    return {"namespaces": left["namespaces"], "links": left["links"], "routes": left["routes"],
            "cgroups": cgroups.leftovers(), "mounts": image.mounts_under(runtime),
            "processes": testboot._processes_under(runtime)}


@pytest.mark.parametrize("after", [2, 10, 30])
def test_ctrl_c_leaves_nothing(tmp_path, after):
    if os.environ.get("SEEDLB_BOOT_TESTS") != "1":
        pytest.skip("boots machines: runs in `make test-boot`")
    why = backend.why_not()
    if why:
        pytest.skip(why)
    runtime = tmp_path / "runtime"
    before = _state(runtime)
    with held_port() as lb_port:  # held until the run's Caddy takes it (tests/ports.py)
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra", "local", "test-boot", "--stack", f"ctrlc-{after}",
             "--runtime-dir", str(runtime), "--lb-port", str(lb_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            start_new_session=True)
        time.sleep(after)  # the moment of the Ctrl-C is what this test varies
        assert proc.poll() is None, f"it ended before {after} s: {proc.stdout.read()[-2000:]}"
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted" in out
    assert _state(runtime) == before, out[-3000:]
