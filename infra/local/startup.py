"""`local up`, step by step: claim the testbed's runtime dir, start a moto server, provision
the stack into it with the unchanged `infra.aws.stack.Stack`, read the stack back, start an
app per instance (or boot a machine), then Caddy and the supervisor that keeps it in step.

`Testbed.up()` runs these steps and, on any failure or Ctrl-C, `Testbed.down()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import threading
from collections.abc import Iterator

from infra.aws.clients import Clients
from infra.aws.emulator import FAKE_CREDENTIALS, emulator_clients
from infra.config import AMI_PARAMETER
from infra.errors import UserError
from infra.local import motoserver, proxy
from infra.local.mirror import StackView
from infra.local.processes import (
    ensure_port_free,
    free_port,
    held_port,
    is_ours,
    log_tail,
    start_token,
    wait_until,
)
from infra.local.runtime import (
    MACHINES,
    SUPERVISOR,
    SUPERVISOR_STATUS,
    Meta,
    StartRefused,
    child_env,
)
from infra.state import read_state, write_state

SUPERVISOR_TIMEOUT = 15.0


class Startup:
    """The steps of one `up` of `testbed` (an infra.local.testbed.Testbed)."""

    def __init__(self, testbed):
        self.testbed = testbed
        self.progress = testbed.progress
        self.caddy_binary = ""

    # --- before anything starts --------------------------------------------------------
    def claim(self) -> Meta:
        """Refuse, having touched nothing (StartRefused), when this testbed cannot start: one
        of this stack still runs, the load balancer's port is taken, Caddy is missing. Else
        clean up after a killed run and write a fresh runtime file."""
        bed = self.testbed
        try:
            self.caddy_binary = proxy.find_caddy(bed.caddy_path)  # fail before starting anything
            with self._start_lock():
                self._refuse_or_clean_previous()
                ensure_port_free("127.0.0.1", bed.lb_port, "the local load balancer's port",
                                 "Stop what uses it, or choose another port: "
                                 f"`{bed.commands.up(lb_port=free_port())}`.")
                self._reset_runtime_dir()
                meta = Meta(stack=bed.stack, mode=bed.mode, owner_pid=os.getpid(),
                            owner_started=start_token(os.getpid()), region=bed.region,
                            app_env=bed.app_env, backend=bed.backend)
                meta.save(bed.meta_path)
        except StartRefused:
            raise
        except UserError as exc:
            raise StartRefused(str(exc), exit_code=exc.exit_code) from None
        return meta

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        """Two `up`s of one stack at once: the second waits until the first has written its
        runtime file, then sees it and refuses."""
        self.testbed.runtime_dir.mkdir(parents=True, exist_ok=True)
        with open(self.testbed.runtime_dir / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _refuse_or_clean_previous(self) -> None:
        """Refuse (touching nothing) while another command owns a testbed of this stack: one
        that `local up` left running, or one that a running `up`/`test` is starting or
        using. Clean up after a run that was killed."""
        bed = self.testbed
        meta = bed.meta
        live = [r for r in bed.processes.records() if is_ours(r)]
        if meta is None and not live:
            return
        owner_running = meta is not None and meta.owner_running()
        if meta is not None and (owner_running or (meta.mode == "up" and live)):
            if owner_running:
                what = f"owned by a running `local {meta.mode}` (pid {meta.owner_pid})"
            else:
                what = "left running by `local up`"
            running = ", ".join(r.describe() for r in live) or "starting"
            shows = f" (`{bed.commands.local('status')}` shows it)"
            raise StartRefused(
                f"a local testbed for stack {bed.stack}, {what}, is still running "
                f"({running}); nothing was changed. {bed.commands.down()} stops it{shows}."
            )
        if live:
            self.progress("a previous run was killed and left "
                          f"{', '.join(r.describe() for r in live)}: cleaning up")
        bed.down()

    def _reset_runtime_dir(self) -> None:
        runtime_dir = self.testbed.runtime_dir
        for sub in ("logs", "seeds", "caddy-data", "caddy-config"):
            shutil.rmtree(runtime_dir / sub, ignore_errors=True)
        for name in (SUPERVISOR_STATUS, "caddy.json"):
            with contextlib.suppress(FileNotFoundError):
                (runtime_dir / name).unlink()
        runtime_dir.mkdir(parents=True, exist_ok=True)

    # --- the steps -----------------------------------------------------------------------
    def run(self, meta: Meta) -> None:
        bed = self.testbed
        warm = self._control_plane(meta)
        supervisor = self._start_supervisor(meta)  # imports while moto warms; waits for Caddy
        self.progress(f"provisioning stack {bed.stack} at {meta.endpoint} with infra.aws.stack")
        from infra.aws.stack import Stack  # the provisioning code, unchanged

        bed.use_clients(warm.clients())  # boto3 sessions are not thread-safe: after the join
        Stack(bed.clients(), bed.settings(), progress=bed.sub_progress).deploy()
        meta.state_file = str(bed.state_file())  # deploy wrote it; the testbed reads moto
        meta.save(bed.meta_path)

        view = bed.read_stack()
        _check_view(view, bed.stack)
        if meta.backend == MACHINES:  # booted instances: infra/local/machines
            from infra.local.machines import backend as machines

            machines.boot_stack(bed, meta, view, machines.prepare(self.progress), self.progress)
        else:
            bed.apps.start_all(meta, view, bed.clients().ec2, bed.first_address,
                               bed.instance_port, self._address_hint)
        self._load_balancer(meta, view)
        self._wait_supervisor(supervisor)
        self._write_grade_endpoints(meta)

    def _control_plane(self, meta: Meta) -> _Warmer:
        """A moto server of the testbed's own (or the shared one it was given), and a thread
        that builds the clients and warms moto's backends meanwhile."""
        bed = self.testbed
        self.progress("control plane: starting a moto server")
        with contextlib.ExitStack() as held:  # moto's port, until moto binds it
            port = None if bed.shared_endpoint else held.enter_context(
                held_port(motoserver.HOST))
            endpoint = bed.shared_endpoint or motoserver.endpoint_for(port)
            # boto3 builds its clients (seconds of model loading on a busy 2-core box) while
            # moto starts; then moto builds each service's backend on its first call (EC2's
            # takes seconds too) while this process loads the provisioning code.
            warm = _Warmer(endpoint, bed.region)
            warm.start()
            meta.endpoint = endpoint if bed.shared_endpoint else motoserver.start(
                bed.processes, child_env(**FAKE_CREDENTIALS), port=port)
        meta.save(bed.meta_path)
        return warm

    def _address_hint(self, other_first_address: str) -> str:
        return ("Stop what uses it (`make local-down` stops an old testbed; STACK= another "
                "stack's), or start this one with another --first-address "
                f"(`{self.testbed.commands.up(first_address=other_first_address)}`).")

    def _load_balancer(self, meta: Meta, view: StackView) -> None:
        bed = self.testbed
        with held_port() as admin_port:  # until Caddy's admin API binds it
            meta.admin = f"127.0.0.1:{admin_port}"
            meta.lb = f"127.0.0.1:{bed.lb_port}"
            meta.save(bed.meta_path)
            config = bed.proxy_config(view, meta)
            self.progress(
                f"load balancer: Caddy on {meta.lb} (listener port {view.listener_port}), "
                f"{len(proxy.upstreams_of(config))} targets, health check {view.health.path} "
                f"every {view.health.interval}s"
            )
            proxy.Caddy(meta.admin, bed.runtime_dir).start(bed.processes, self.caddy_binary,
                                                           config)

    def _start_supervisor(self, meta: Meta):
        bed = self.testbed
        argv = [
            sys.executable, "-m", "infra.local.supervisor",
            "--stack", bed.stack, "--runtime-dir", str(bed.runtime_dir),
        ]  # fmt: skip
        env = child_env(**FAKE_CREDENTIALS)
        env.update(AWS_ENDPOINT_URL=meta.endpoint, AWS_REGION=bed.region)
        proc, _record = bed.processes.start(SUPERVISOR, argv, env=env)
        return proc

    def _wait_supervisor(self, proc) -> None:
        """The proxy must follow the control plane: its first sync must have happened."""
        bed = self.testbed
        status = bed.runtime_dir / SUPERVISOR_STATUS
        wait_until(lambda: proc.poll() is not None or status.exists(), SUPERVISOR_TIMEOUT, 0.05)
        if not status.exists():
            record = bed.processes.record(SUPERVISOR)
            log = record.log if record else "?"
            raise UserError(
                f"the supervisor that keeps Caddy in step with the control plane "
                f"{'exited' if proc.poll() is not None else 'did not sync'} at start-up; "
                f"its log ({log}):\n{log_tail(log)}"
            )

    def _write_grade_endpoints(self, meta: Meta) -> None:
        """So that `make grade LB=<lb>` can check each local instance too."""
        bed = self.testbed
        state = read_state(bed.state_dir, bed.stack)  # the file deploy just wrote
        if state is None:
            return
        state["grade_endpoints"] = {"lb": meta.lb, "instances": list(meta.instances.values())}
        write_state(bed.state_dir, bed.stack, state)


def _check_view(view: StackView, stack: str) -> None:
    missing = []
    if not view.instance_ids:
        missing.append("running instances")
    if view.lb_arn is None:
        missing.append("a load balancer")
    if view.listener_port is None:
        missing.append("a listener that forwards to a target group")
    if view.health is None:
        missing.append("a target group")
    if missing:
        raise UserError(
            f"the control plane has no {', '.join(missing)} tagged Stack={stack} after "
            "deploy: the provisioning code and the moto server disagree (a bug to report)"
        )


class _Warmer(threading.Thread):
    """Builds the testbed's boto3 clients, then, as soon as moto answers, makes the first
    call of each service the stack uses, so that moto builds those backends now."""

    def __init__(self, endpoint: str, region: str):
        super().__init__(daemon=True, name="moto-warm-up")
        self.endpoint, self.region = endpoint, region
        self._clients: Clients | None = None

    def run(self) -> None:
        with contextlib.suppress(Exception):  # only an optimisation: deploy reports real errors
            clients = emulator_clients(self.endpoint, self.region)
            for service in ("ec2", "elbv2", "ssm", "sts"):
                getattr(clients, service)  # builds the client: boto3 loads its model
            self._clients = clients
            if wait_until(lambda: motoserver.responds(self.endpoint, timeout=0.5),
                          motoserver.READY_TIMEOUT, 0.05):
                clients.ec2.describe_availability_zones()
                clients.elbv2.describe_load_balancers()
                clients.ssm.get_parameter(Name=AMI_PARAMETER)

    def clients(self) -> Clients | None:
        """The warmed clients (None if building them failed), once the thread is done."""
        self.join()
        return self._clients
