"""Servers the bench starts on loopback: readiness waits, a clean stop.

Each process runs in its own session, so that stopping it also stops what it forked
(gunicorn's workers, the werkzeug reloader if any). Output goes to a log file, whose
tail is quoted when a server does not come up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from infra.errors import UserError

LOOPBACK = "127.0.0.1"


class ServerProcess:
    """One server subprocess with its log; a context manager that always stops it."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None,
                 cwd: str | Path | None = None):
        self.name = name
        self.argv = argv
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")  # the child keeps its own copy
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise UserError(f"cannot start {self.name}: {exc}") from exc
        finally:
            log.close()
        return self

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Poll `url` until it answers at all (any status): the server is accepting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise UserError(f"{self.name} exited with code {self.proc.returncode}:\n"
                                f"{self.log_tail()}")
            try:
                requests.get(url, timeout=1.0)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise UserError(f"{self.name} did not answer {url} within {timeout:.0f}s:\n"
                        f"{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def python_argv(*args: str) -> list[str]:
    """Run with the same interpreter (the project's .venv) as the bench itself."""
    return [sys.executable, *args]
