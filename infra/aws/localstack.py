"""LocalStack's community code as a plain process on 127.0.0.1, without Docker
(`make localstack-up`, `make localstack-down`, `python -m infra localstack up|down`).

It runs from its own venv (.venv-localstack: `make setup-localstack` installs the lock's
localstack group, which pins its own boto3 and brings a second `moto`), with:
- GATEWAY_LISTEN=127.0.0.1:<port> and GATEWAY_SERVER=hypercorn: the default server ignores
  the host part and would listen on every interface;
- OVERRIDE_IN_DOCKER=0 and FILESYSTEM_ROOT=<dir>: not in a container, its files under <dir>;
- nothing fetched from outside: no DNS server, no certificate download, no analytics.
`up` waits until its health endpoint answers, then calls each service this project uses once,
so that their code is loaded before a deploy's first call (STS took 4.5 s cold). `down`
sends SIGTERM, and SIGKILL after a bounded wait: LocalStack 4.13 sometimes hangs for more than
25 s on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-localstack"
STATE = ROOT / ".local" / "localstack"
DEFAULT_PORT = 4566  # LocalStack's own, and localstack-client's default endpoint
SERVICES = "ec2,elbv2,ssm,sts,iam"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0  # then SIGKILL
# LocalStack's conventions for a client: any keys (it answers account 000000000000), us-east-1.
CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
              "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class LocalStack:
    """One LocalStack process: its port, and the directory with its files, log and pid."""

    port: int = DEFAULT_PORT
    state: Path = STATE
    venv: Path = VENV

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.state / "localstack.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "localstack.pid"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "LOCALSTACK_"))}
        env.update({
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}", "GATEWAY_SERVER": "hypercorn",
            "OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": str(self.state / "fs"),
            "SERVICES": SERVICES, "EAGER_SERVICE_LOADING": "0",
            "DNS_ADDRESS": "0", "SKIP_SSL_CERT_DOWNLOAD": "1", "DISABLE_EVENTS": "1",
            "SKIP_INFRA_DOWNLOADS": "1", "EC2_VM_MANAGER": "mock",
            # Its answer to a service the free code lacks (ELBv2's 501) first fetches a
            # service catalog from api.localstack.cloud: aimed at a loopback port where
            # nothing listens, the fetch is refused at once and it uses the catalog it
            # carries. (Unset, it looked the host up: traffic off this machine.)
            "API_ENDPOINT": "http://127.0.0.1:1",
        })
        return env

    def pid(self) -> int | None:
        """The pid of the LocalStack this directory started, if it still runs."""
        try:
            pid = int(self.pid_file.read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # A pid file outliving its process may name another one now: never signal that.
        return pid if b"localstack.runtime.main" in command else None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_localstack/health",  # noqa: S310
                                        timeout=2) as reply:
                return "services" in json.loads(reply.read())
        except (OSError, ValueError):
            return False

    def up(self, progress=print) -> float:
        """Start it (unless this directory's already runs) and wait until it answers; the
        seconds it took."""
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise UserError(f"LocalStack is not installed in {self.venv}: run `make "
                            "setup-localstack` (or `make localstack-up`, which does)")
        if self.pid():
            progress(f"LocalStack already runs at {self.endpoint} (pid {self.pid()})")
            return 0.0
        self.state.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log, "wb") as log:
            proc = subprocess.Popen([str(python), "-m", "localstack.runtime.main"],
                                    env=self.environment(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.state)
        self.pid_file.write_text(str(proc.pid))
        progress(f"starting LocalStack at {self.endpoint} (pid {proc.pid}, log {self.log})")
        try:  # whatever stops the start (a failure, Ctrl-C) stops the process too
            while not self.healthy():
                if proc.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                    tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise UserError(f"LocalStack did not start at {self.endpoint}: "
                                    f"{' | '.join(tail) or 'no output'}")
                time.sleep(0.2)  # a process binding its port: no waiter covers it
            self._warm_up()
        except BaseException:
            # by the child's pid: its command line may read empty just after its exec
            self._stop(proc.pid, progress=lambda _m: None)
            raise
        took = time.monotonic() - started
        progress(f"LocalStack answers at {self.endpoint} after {took:.1f} s")
        return took

    def _warm_up(self) -> None:
        """One call to each service deploy uses, so that each has loaded its code."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        from infra.aws.emulator import botocore_session_without_profile

        config = Config(read_timeout=60, retries={"total_max_attempts": 1})
        session = boto3.session.Session(  # LocalStack's keys; no profile (AWS_PROFILE) read
            aws_access_key_id=CLIENT_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CLIENT_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=CLIENT_ENV["AWS_REGION"],
            botocore_session=botocore_session_without_profile())
        calls = (("sts", "get_caller_identity", {}),
                 ("ec2", "describe_availability_zones", {}),
                 ("ssm", "describe_parameters", {"MaxResults": 1}),
                 ("elbv2", "describe_load_balancers", {}))
        for service, operation, params in calls:
            client = session.client(service, endpoint_url=self.endpoint, config=config)
            try:
                getattr(client, operation)(**params)
            except ClientError:
                pass  # ELBv2 answers 501 in the free code: loaded all the same

    def down(self, progress=print) -> bool:
        """Stop the LocalStack this directory started: SIGTERM, then SIGKILL after
        STOP_TIMEOUT. False if none ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            progress("no LocalStack started here is running")
            return False
        self._stop(pid, progress)
        return True

    def _stop(self, pid: int, progress) -> None:
        started = time.monotonic()
        self._signal(pid, signal.SIGTERM)
        while self._alive(pid) and time.monotonic() - started < STOP_TIMEOUT:
            time.sleep(0.1)
        how = "stopped"
        if self._alive(pid):
            self._signal(pid, signal.SIGKILL)
            how = f"killed after {STOP_TIMEOUT:g} s"
            while self._alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        progress(f"LocalStack (pid {pid}) {how} in {time.monotonic() - started:.1f} s")

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        """To its process group: it was started in a session of its own."""
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
            if waited == pid:
                return False
        except ChildProcessError:
            pass  # started by another command: not ours to reap
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie left by a parent that is gone still answers kill(0).
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True
