"""Commands as a user types them: in bash, with an environment as bare as a new terminal's
(no AWS_*, no ~/.aws), from a checkout of their own (its .state/ and .local/ are not this
one's), and under the suite's loopback guard in every Python process they start
(tests/guard_site/sitecustomize.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUARD_SITE = Path(__file__).resolve().parent / "guard_site"
# What a checkout holds that the commands use; the rest (.state/, .local/) starts empty.
CHECKOUT = ("Makefile", "app", "infra", ".ci", "pyproject.toml", "requirements.lock", ".venv",
            "docker-compose.localstack.yml", "README.md", "docs", "tests", ".git",
            "requirements-localstack.lock")
# Installed once per checkout, and linked where they are (make test-localstack's venv).
INSTALLED = (".venv-localstack", ".venv-tools")


class Shell:
    def __init__(self, tmp_path: Path):
        self.checkout = tmp_path / "checkout"
        self.checkout.mkdir()
        for name in CHECKOUT:
            (self.checkout / name).symlink_to(REPO / name)
        for name in INSTALLED:
            if (REPO / name).exists():
                (self.checkout / name).symlink_to(REPO / name)
        self.home = tmp_path / "home"
        self.home.mkdir()  # no ~/.aws: no profile, no region, no keys
        self.offmachine_log = tmp_path / "offmachine.log"
        self.env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "LANG": "C.UTF-8",
                    "PYTHONPATH": str(GUARD_SITE),
                    "SEEDLB_OFFMACHINE_LOG": str(self.offmachine_log)}

    def run(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """`script` in `env -i bash`, from the checkout."""
        return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in self.env.items()),
                               "bash", "-c", script], cwd=self.checkout, capture_output=True,
                              text=True, timeout=timeout)

    def off_machine(self) -> str:
        """Every connection or name lookup off this machine that a command tried ('' none)."""
        try:
            return self.offmachine_log.read_text()
        except FileNotFoundError:
            return ""
