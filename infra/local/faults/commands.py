"""`python -m infra ...` against a running testbed, in a process of its own, as a user runs it.

The doctor runs while the grader does (roundtrip.py): started first, read after. `make
test-boot` runs `logs` the same way (machines/testboot.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from infra.aws.emulator import FAKE_CREDENTIALS
from infra.errors import UserError
from infra.local.processes import PROJECT_ROOT
from infra.local.runtime import child_env

DOCTOR_SECONDS = 60.0


def command_env(testbed) -> dict[str, str]:
    """The environment a user's command gets for the testbed: its moto server's endpoint and
    region, fake keys, and none of this process's own AWS settings."""
    meta = testbed.meta
    return child_env(**FAKE_CREDENTIALS, AWS_ENDPOINT_URL=meta.endpoint, AWS_REGION=meta.region,
                     AWS_DEFAULT_REGION=meta.region)


def infra_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "infra", *args]


class DoctorRun:
    """`python -m infra doctor --stack S --json`: the codes of its error and warning findings."""

    def __init__(self, testbed):
        self.proc = subprocess.Popen(
            infra_argv("doctor", "--stack", testbed.stack, "--json"), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=command_env(testbed), cwd=PROJECT_ROOT)

    def codes(self) -> list[str]:
        try:
            out, err = self.proc.communicate(timeout=DOCTOR_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise UserError(f"the doctor did not finish within {DOCTOR_SECONDS:.0f} s") from None
        try:
            findings = json.loads(out)["findings"]
        except (ValueError, KeyError) as exc:
            raise UserError(f"the doctor gave no JSON (exit {self.proc.returncode}): "
                            f"{(err or out)[-400:]}") from exc
        # each code once: the doctor names a fault per instance (BOOT_SCRIPT_FAILED twice)
        return list(dict.fromkeys(f["code"] for f in findings
                                  if f["severity"] in ("error", "warning")))
