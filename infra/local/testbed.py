"""The local testbed: the stack's control plane in a moto server, provisioned by the same
`infra.aws.stack.Stack` code as AWS, then brought to life from what the control plane reports:
one `python -m app` process per instance and Caddy standing in for the load balancer.

    Testbed(stack="seed-lb-local", lb_port=8080).up()   # .instances, .lb_address
    ...kill_instance(id), start_instance(id), status(), down()

Everything runs in processes of their own (own process group, a pid file each under
`.local/<stack>/pids/`), so `up` can return and leave the testbed running, and `down` can
clean up after a run that was killed. Its parts: startup (the steps of `up`), apps (the app
processes), status (the `local status` document), commands (what it prints for the user),
runtime (its runtime file and names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from infra.aws.clients import Clients
from infra.aws.emulator import emulator_clients
from infra.config import STATE_DIR, Settings
from infra.console import quiet
from infra.errors import UserError
from infra.local import proxy
from infra.local.apps import AppProcesses
from infra.local.commands import TestbedCommands
from infra.local.interrupts import Interrupts
from infra.local.mirror import StackView, read_stack
from infra.local.processes import ProcessGroup
from infra.local.runtime import (
    DEFAULT_LB_PORT,
    DEFAULT_REGION,
    DEFAULT_TESTBED_STACK,
    FIRST_ADDRESS,
    MACHINES,
    META_FILE,
    PROCESSES,
    RUNTIME_ROOT,
    Meta,
    check_loopback,
)
from infra.local.startup import Startup
from infra.local.status import TestbedStatus, collect
from infra.local.teardown import Teardown
from infra.state import state_path


class Testbed:
    """One local testbed: a moto server, the app processes, Caddy and its supervisor.

    `interrupts`: the running command's Ctrl-C handling (infra/local/interrupts.py); the
    command installs it around its run with `sigterm_as_interrupt(testbed.interrupts)`."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self,
        stack: str = DEFAULT_TESTBED_STACK,
        *,
        lb_port: int = DEFAULT_LB_PORT,
        runtime_dir: str | Path | None = None,
        state_dir: str | Path = STATE_DIR,
        first_address: str = FIRST_ADDRESS,
        instance_port: int | None = None,
        caddy: str | None = None,
        region: str = DEFAULT_REGION,
        progress: Callable[[str], None] | None = None,
        mode: str = "up",
        app_env: dict[str, str] | None = None,
        endpoint: str | None = None,
        machines: bool = False,
        interrupts: Interrupts | None = None,
    ):
        check_loopback(first_address, "--first-address")
        for port, what in ((lb_port, "--lb-port"), (instance_port, "the instance port")):
            if port is not None and not 0 < port < 65536:
                raise UserError(f"{what} {port} is not a TCP port (1-65535)")
        self.stack = stack
        self.lb_port = lb_port
        self.runtime_dir = Path(runtime_dir or Path(RUNTIME_ROOT) / stack).resolve()
        self.state_dir = Path(state_dir).resolve()
        self.first_address = first_address
        self.instance_port = instance_port
        self.caddy_path = caddy
        self.region = region
        self.progress = progress or quiet
        self.mode = mode
        self.app_env = dict(app_env or {})  # extra environment for the app (APP_WORKERS=...)
        # A moto server started by someone else (`local faults` shares one among its
        # testbeds): used, never started nor stopped here.
        self.shared_endpoint = endpoint
        self.backend = MACHINES if machines else PROCESSES
        self.interrupts = interrupts or Interrupts()
        self.processes = ProcessGroup(self.runtime_dir, self.interrupts)
        self.apps = AppProcesses(self.processes, self.runtime_dir, self.progress)
        self.meta_path = self.runtime_dir / META_FILE
        self.commands = TestbedCommands(
            stack=stack, mode=mode, lb_port=lb_port, first_address=first_address,
            region=region, runtime_dir=self.runtime_dir, state_dir=self.state_dir,
            meta=lambda: self.meta)
        self._clients: Clients | None = None

    # --- what others read ----------------------------------------------------------------
    @property
    def meta(self) -> Meta | None:
        return Meta.load(self.meta_path)

    def require_meta(self) -> Meta:
        meta = self.meta
        if meta is None:
            raise UserError(
                f"no local testbed for stack {self.stack} (nothing in {self.runtime_dir}): "
                "start one with `make local-up`"
            )
        return meta

    @property
    def lb_address(self) -> str:
        return self.require_meta().lb

    @property
    def instances(self) -> dict[str, str]:
        """Instance id -> the "host:port" its app process listens on."""
        return dict(self.require_meta().instances)

    @property
    def endpoint_url(self) -> str:
        return self.require_meta().endpoint

    def clients(self) -> Clients:
        """Clients for this testbed's moto server, with fake keys (passed to the
        provisioning code as they are: no environment is swapped)."""
        if self._clients is None:
            meta = self.require_meta()
            self._clients = emulator_clients(meta.endpoint, meta.region)
        return self._clients

    def use_clients(self, clients: Clients | None) -> None:
        """Clients built ahead (`up` builds them while moto starts); None: build on demand."""
        self._clients = clients

    def settings(self) -> Settings:
        # The provisioning defaults (health check, ports), with waits paced for an emulator.
        return Settings.fast(stack=self.stack, state_dir=str(self.state_dir))

    def read_stack(self) -> StackView:
        return read_stack(self.clients(), self.stack)

    def status(self) -> TestbedStatus:
        """`local status`: one document; its text and its JSON are two views of it."""
        return collect(self)

    def sub_progress(self, message: str) -> None:
        self.progress(f"  {message}")

    def state_file(self) -> Path:
        return state_path(self.state_dir, self.stack)

    def proxy_config(self, view: StackView, meta: Meta, **routing) -> dict:
        """Caddy's config for what the control plane says now. The supervisor re-runs this
        with the routing that AWS's network rules give (`upstreams`, `lb_listen`,
        `fail_open`, ...: see proxy.build_config)."""
        upstreams = [meta.instances[t.id] for t in view.in_service if t.id in meta.instances]
        options = {"lb_listen": meta.lb, "upstreams": upstreams, **routing}
        return proxy.build_config(admin_listen=meta.admin, health=view.health,
                                  runtime_dir=self.runtime_dir, **options)

    # --- up and down ---------------------------------------------------------------------
    def up(self) -> Testbed:
        """Start everything; on any failure (or Ctrl-C) stop what was started, then re-raise.

        Raises StartRefused, having touched nothing, when it cannot start at all: a testbed
        of this stack still runs, the load balancer's port is taken, Caddy is missing.
        """
        startup = Startup(self)
        meta = startup.claim()
        try:
            startup.run(meta)
            self.interrupts.check()
        except BaseException:
            self.progress("start-up failed: stopping what was started")
            report: dict = {}
            with contextlib.suppress(Exception):
                report = self.down()
            if report.get("left"):
                self.progress(f"left running: {', '.join(report['left'])}; "
                              f"{self.commands.down()} stops them")
            raise
        return self

    def down(self) -> dict:
        """Stop every process, destroy the stack's resources in moto, stop moto.

        Works from the pid files alone, so also after the process that ran `up` was killed.
        Ctrl-C (or SIGTERM) does not interrupt it: it skips the stack's destruction (moto's
        resources go with moto) and SIGKILLs at once. Its report: `stopped`, `destroyed`,
        `interrupted`, `listening` (addresses that still answer) and `left` (what still runs;
        its pid file stays, for the next `down`).
        """
        report = Teardown(self).run()
        self._clients = None
        return report

    def clients_for(self, meta: Meta) -> Clients:
        """The clients `up` built, if they aim at this moto; building new ones takes a second."""
        clients = self._clients
        if clients is not None and clients.target.endpoint_url == meta.endpoint:
            return clients
        return emulator_clients(meta.endpoint, meta.region)

    # --- instances -----------------------------------------------------------------------
    def _instance_address(self, instance_id: str) -> str:
        instances = self.instances
        if instance_id not in instances:
            known = ", ".join(instances) or "none"
            raise UserError(f"no instance {instance_id} in the local testbed (instances: {known})")
        return instances[instance_id]

    def kill_instance(self, instance_id: str) -> None:
        """Crash the instance's app: SIGKILL to its process group (a booted machine's:
        `systemctl kill -s KILL` inside)."""
        self._instance_address(instance_id)
        if self.require_meta().backend == MACHINES:
            from infra.local.machines import backend as machines

            return machines.kill_instance(self, instance_id)
        self.apps.kill(instance_id)

    def start_instance(self, instance_id: str) -> None:
        """Start the instance's app again, with the same SEED_FILE and address (a booted
        machine: systemd restarts it, or a new boot)."""
        address = self._instance_address(instance_id)
        meta = self.require_meta()
        if meta.backend == MACHINES:
            from infra.local.machines import backend as machines

            return machines.start_instance(self, instance_id)
        self.apps.start(instance_id, address, meta.app_env)
