"""The real servers under the app's tests: `python -m app`, and others for comparison."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests
from signals import sigint_default

from infra.local.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
INSTANCE_ID = "i-0serverundertest"
# Apache/NCSA combined log format: host ident user [time] "request" status bytes "ref" "agent"
COMBINED = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "[A-Z]+ \S+ HTTP/1\.[01]" \d{3} \S+ "[^"]*" "[^"]*"$')


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: loopback only
    return session


def fresh_get(url: str) -> requests.Response:
    """GET on a new connection, which the kernel may hand to any worker."""
    with loopback_session() as session:
        return session.get(url, timeout=10, headers={"Connection": "close"})


# Other servers of the same app, to show that the app's own rules hold whatever serves it.
OTHER_SERVERS = {
    "gunicorn gthread": lambda port: [
        sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4",
        "--preload", "--no-control-socket", "-b", f"127.0.0.1:{port}", "app:create_app()"],
    "flask run": lambda port: [
        sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
}


class Server:
    """A `python -m app` subprocess (or `argv`); its stdout and stderr go to files."""

    def __init__(self, tmp_path: Path, port: int, *args: str, env: dict | None = None,
                 argv: list[str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout_path = tmp_path / f"stdout-{port}.log"
        self.stderr_path = tmp_path / f"stderr-{port}.log"
        full_env = {**os.environ, "INSTANCE_ID": INSTANCE_ID, **(env or {})}
        if "SEED_FILE" not in (env or {}):
            full_env.pop("SEED_FILE", None)  # memory only unless a test asks for a file
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv or [sys.executable, "-m", "app", "--port", str(port), *args],
                cwd=REPO, env=full_env, stdout=out, stderr=err, start_new_session=True,
                preexec_fn=sigint_default)  # the SIGINT test: also under `make test &`

    def wait_ready(self, timeout: float = 20.0) -> Server:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                return fresh_get(self.url + "/health").status_code == 200
            except requests.ConnectionError:
                return False

        if not wait_until(ready, timeout, 0.1):
            raise AssertionError(f"server not ready after {timeout}s:\n{self.stderr}")
        return self

    def stop(self) -> int:
        """SIGTERM (graceful), then SIGQUIT (quick), then SIGKILL to the server's own group."""
        for sig, grace in ((signal.SIGTERM, 12), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)  # the master and its workers, by the group id
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.returncode

    def wait_workers(self, count: int, timeout: float = 20.0) -> list[int]:
        pids: list[int] = []

        def counted() -> bool:
            pids[:] = self.worker_pids()
            return len(pids) == count

        if not wait_until(counted, timeout, 0.1):
            raise AssertionError(f"expected {count} workers, have {self.worker_pids()}")
        return pids

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")
