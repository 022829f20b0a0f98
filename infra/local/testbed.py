"""The local testbed: the stack's control plane in a moto server, provisioned by the same
`infra.aws.stack.Stack` code as AWS, then brought to life from what the control plane reports:
one `python -m app` process per instance and Caddy standing in for the load balancer.

    Testbed(stack="seed-lb-local", lb_port=8080).up()   # .instances, .lb_address
    ...kill_instance(id), start_instance(id), status(), down()

Everything runs in processes of their own (own process group, a pid file each under
`.local/<stack>/pids/`), so `up` can return and leave the testbed running, and `down` can
clean up after a run that was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from infra.aws.clients import Clients
from infra.aws.emulator import (
    FAKE_CREDENTIALS,
    emulator_clients,
    emulator_environment,
)
from infra.config import AMI_PARAMETER, APP_PORT, STATE_DIR, Settings
from infra.errors import UserError
from infra.local import boot, motoserver, proxy
from infra.local.mirror import StackView, read_stack
from infra.local.processes import (
    INTERRUPTS,
    ProcessGroup,
    address_bindable,
    alive,
    ensure_port_free,
    free_port,
    is_ours,
    listening,
    log_tail,
    same_process,
    start_token,
    wait_until,
)
from infra.state import read_state, state_path, write_state

DEFAULT_STACK = "seed-lb-local"
DEFAULT_LB_PORT = 8080
DEFAULT_REGION = "us-east-1"
FIRST_ADDRESS = "127.0.0.11"  # then .12, ...: one loopback address per instance, port 5000
RUNTIME_ROOT = ".local"
META_FILE = "testbed.json"
APP_READY_TIMEOUT = 20.0
SUPERVISOR = "supervisor"
SUPERVISOR_TIMEOUT = 15.0
PROCESSES, MACHINES = "processes", "machines"  # what an instance is (infra/local/machines)


def app_process_name(instance_id: str) -> str:
    return f"app-{instance_id}"


@dataclass
class Meta:
    """What this testbed started, written to `<runtime>/testbed.json`: where to find its
    processes again. Not a description of the stack: that stays in the control plane."""

    stack: str
    mode: str  # "up" (left running on purpose) or "test" (owned by a running `local test`)
    owner_pid: int
    owner_started: str = ""  # the owner's start token: its pid alone may be reused
    endpoint: str = ""
    region: str = DEFAULT_REGION
    lb: str = ""
    admin: str = ""
    state_file: str = ""
    instances: dict[str, str] = field(default_factory=dict)  # instance id -> "host:port"
    app_env: dict[str, str] = field(default_factory=dict)  # extra app environment, if any
    app_ready_seconds: float = 0.0  # how long the apps took to answer at start-up
    # instance id -> why its app was never started (its first boot could not install it)
    not_started: dict[str, str] = field(default_factory=dict)
    backend: str = PROCESSES  # instances as app processes, or booted machines

    def owner_running(self) -> bool:
        """The command that started this testbed is still running (not this process)."""
        return self.owner_pid != os.getpid() and same_process(self.owner_pid, self.owner_started)

    @classmethod
    def load(cls, path: Path) -> Meta | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)


class StartRefused(UserError):
    """`up` would not start, and touched nothing: a testbed of this stack runs, a port is
    taken, Caddy is missing. Nothing to clean up after it."""


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an app process: no AWS credentials, as on an instance without a role."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _quiet(_message: str) -> None:
    pass


class Testbed:
    """One local testbed: a moto server, the app processes, Caddy and its supervisor."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self,
        stack: str = DEFAULT_STACK,
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
    ):
        _check_loopback(first_address, "--first-address")
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
        self.progress = progress or _quiet
        self.mode = mode
        self.app_env = dict(app_env or {})  # extra environment for the app (APP_WORKERS=...)
        # A moto server started by someone else (`local faults` shares one among its
        # testbeds): used, never started nor stopped here.
        self.shared_endpoint = endpoint
        self.backend = MACHINES if machines else PROCESSES
        self.processes = ProcessGroup(self.runtime_dir)
        self.meta_path = self.runtime_dir / META_FILE
        self._clients: Clients | None = None

    # --- what others read ----------------------------------------------------------------
    @property
    def meta(self) -> Meta | None:
        return Meta.load(self.meta_path)

    def _require_meta(self) -> Meta:
        meta = self.meta
        if meta is None:
            raise UserError(
                f"no local testbed for stack {self.stack} (nothing in {self.runtime_dir}): "
                "start one with `make local-up`"
            )
        return meta

    @property
    def lb_address(self) -> str:
        return self._require_meta().lb

    @property
    def instances(self) -> dict[str, str]:
        """Instance id -> the "host:port" its app process listens on."""
        return dict(self._require_meta().instances)

    @property
    def endpoint_url(self) -> str:
        return self._require_meta().endpoint

    def clients(self) -> Clients:
        if self._clients is None:
            meta = self._require_meta()
            self._clients = emulator_clients(meta.endpoint, meta.region)
        return self._clients

    def settings(self) -> Settings:
        # The provisioning defaults (health check, ports), with waits paced for an emulator.
        return Settings.fast(stack=self.stack, state_dir=str(self.state_dir))

    def read_stack(self) -> StackView:
        meta = self._require_meta()
        with emulator_environment(meta.endpoint, meta.region):
            return read_stack(self.clients(), self.stack)

    # --- up ------------------------------------------------------------------------------
    def up(self) -> Testbed:
        """Start everything; on any failure (or Ctrl-C) stop what was started, then re-raise.

        Raises StartRefused, having touched nothing, when it cannot start at all: a testbed
        of this stack still runs, the load balancer's port is taken, Caddy is missing.
        """
        try:
            caddy_binary = proxy.find_caddy(self.caddy_path)  # fail before starting anything
            with self._start_lock():
                self._refuse_or_clean_previous()
                ensure_port_free(
                    "127.0.0.1",
                    self.lb_port,
                    "the local load balancer's port",
                    "Stop what uses it, or choose another port: "
                    f"`{self.up_command(lb_port=free_port())}`.",
                )
                self._reset_runtime_dir()
                meta = Meta(stack=self.stack, mode=self.mode, owner_pid=os.getpid(),
                            owner_started=start_token(os.getpid()), region=self.region,
                            app_env=self.app_env, backend=self.backend)
                meta.save(self.meta_path)
        except StartRefused:
            raise
        except UserError as exc:
            raise StartRefused(str(exc), exit_code=exc.exit_code) from None
        try:
            self._up(meta, caddy_binary)
            INTERRUPTS.check()
        except BaseException:
            self.progress("start-up failed: stopping what was started")
            report: dict = {}
            with contextlib.suppress(Exception):
                report = self.down()
            if report.get("left"):
                self.progress(f"left running: {', '.join(report['left'])}; "
                              f"{self.down_command()} stops them")
            raise
        return self

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        """Two `up`s of one stack at once: the second waits until the first has written its
        runtime file, then sees it and refuses."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        with open(self.runtime_dir / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _up(self, meta: Meta, caddy_binary: str) -> None:
        self.progress("control plane: starting a moto server")
        if self.shared_endpoint:  # a moto server that other testbeds use too (local faults)
            moto_port = None
            endpoint = self.shared_endpoint
        else:
            moto_port = free_port(motoserver.HOST)
            endpoint = motoserver.endpoint_for(moto_port)
        # boto3 builds its clients (seconds of model loading on a busy 2-core box) while moto
        # starts; then moto builds each service's backend on its first call (EC2's takes
        # seconds too) while this process loads the provisioning code.
        warm = _Warmer(endpoint, self.region)
        warm.start()
        meta.endpoint = endpoint if self.shared_endpoint else motoserver.start(
            self.processes, child_env(**FAKE_CREDENTIALS), port=moto_port)
        meta.save(self.meta_path)
        supervisor = self._start_supervisor(meta)  # imports while moto warms; waits for Caddy
        self.progress(f"provisioning stack {self.stack} at {meta.endpoint} with infra.aws.stack")
        from infra.aws.stack import Stack  # the provisioning code, unchanged

        self._clients = warm.clients()  # boto3 sessions are not thread-safe: after the join
        with emulator_environment(meta.endpoint, self.region):
            stack = Stack(self.clients(), self.settings(), progress=self._sub_progress)
            stack.deploy()  # writes the state file; the testbed reads moto, not it
        meta.state_file = str(self._state_file())
        meta.save(self.meta_path)

        view = self.read_stack()
        self._check_view(view)
        if meta.backend == MACHINES:  # booted instances: infra/local/machines
            from infra.local.machines import backend as machines

            prepared = machines.prepare(self.progress)
            machines.boot_stack(self, meta, view, prepared, self.progress)
        else:
            self._start_apps(meta, view)

        meta.admin = f"127.0.0.1:{free_port()}"
        meta.lb = f"127.0.0.1:{self.lb_port}"
        meta.save(self.meta_path)
        config = self.proxy_config(view, meta)
        self.progress(
            f"load balancer: Caddy on {meta.lb} (listener port {view.listener_port}), "
            f"{len(proxy.upstreams_of(config))} targets, health check {view.health.path} "
            f"every {view.health.interval}s"
        )
        proxy.Caddy(meta.admin, self.runtime_dir).start(self.processes, caddy_binary, config)
        self._wait_supervisor(supervisor)
        self._write_grade_endpoints(meta)

    def _start_apps(self, meta: Meta, view: StackView) -> None:
        """One app process per instance, each on its own loopback address."""
        meta.instances = self._assign_addresses(view)
        # An instance without a route to the internet could not install the app at boot.
        meta.not_started = boot.boot_problems(self.clients().ec2, list(meta.instances))
        meta.save(self.meta_path)
        for instance_id, why in meta.not_started.items():
            self.progress(f"instance {instance_id}: app not started: {why}")
        booting = {i: a for i, a in meta.instances.items() if i not in meta.not_started}

        for instance_id, address in booting.items():
            host, port = address.rsplit(":", 1)
            ensure_port_free(
                host,
                int(port),
                f"instance {instance_id}'s address",
                "Stop what uses it (`make local-down` stops an old testbed; STACK= another "
                "stack's), "
                "or start this one with another --first-address "
                f"(`{self.up_command(first_address=_other_block(self.first_address))}`).",
            )
        self.progress(
            f"instances: starting {len(booting)} app processes "
            f"({', '.join(booting.values())})"
        )
        spawned = time.monotonic()
        procs = {iid: self._spawn_app(iid, addr) for iid, addr in booting.items()}
        for instance_id, proc in procs.items():  # they start together; wait for each
            self._wait_app_ready(instance_id, booting[instance_id], proc)
        meta.app_ready_seconds = round(time.monotonic() - spawned, 2)

    def _sub_progress(self, message: str) -> None:
        self.progress(f"  {message}")

    def _state_file(self) -> Path:
        return state_path(self.state_dir, self.stack)

    def _check_view(self, view: StackView) -> None:
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
                f"the control plane has no {', '.join(missing)} tagged Stack={self.stack} after "
                "deploy: the provisioning code and the moto server disagree (a bug to report)"
            )

    def _assign_addresses(self, view: StackView) -> dict[str, str]:
        """One loopback address per instance, in launch order, on the target group's port."""
        port = self.instance_port or view.target_port or APP_PORT
        prefix, last = self.first_address.rsplit(".", 1)
        if address_bindable(self.first_address):
            ids = view.instance_ids
            return {iid: f"{prefix}.{int(last) + i}:{port}" for i, iid in enumerate(ids)}
        # macOS: only 127.0.0.1 without aliases, so one port per instance instead.
        return {iid: f"127.0.0.1:{port + 1 + i}" for i, iid in enumerate(view.instance_ids)}

    def _seed_file(self, instance_id: str) -> Path:
        return self.runtime_dir / "seeds" / f"{instance_id}.seed"

    def _spawn_app(self, instance_id: str, address: str):
        host, port = address.rsplit(":", 1)
        self._seed_file(instance_id).parent.mkdir(parents=True, exist_ok=True)
        meta = self.meta
        env = child_env(**(meta.app_env if meta else self.app_env))
        env.update(INSTANCE_ID=instance_id, SEED_FILE=str(self._seed_file(instance_id)))
        # The production command, as the user data runs it on an instance.
        argv = [sys.executable, "-m", "app", "--host", host, "--port", port]
        proc, _record = self.processes.start(app_process_name(instance_id), argv, env=env)
        return proc

    def _wait_app_ready(self, instance_id: str, address: str, proc) -> None:
        def ready() -> bool:
            return proc.poll() is not None or health_ok(address)

        wait_until(ready, APP_READY_TIMEOUT, 0.1)
        if proc.poll() is not None or not health_ok(address):
            record = self.processes.record(app_process_name(instance_id))
            state = f"exited with code {proc.returncode}" if proc.poll() is not None else (
                f"did not answer GET /health within {APP_READY_TIMEOUT:.0f} s"
            )
            raise UserError(
                f"instance {instance_id}'s app ({address}) {state} at start-up; "
                f"the last lines of its log ({record.log if record else '?'}):\n"
                f"{log_tail(record.log) if record else ''}"
            )

    def proxy_config(self, view: StackView, meta: Meta, **routing) -> dict:
        """Caddy's config for what the control plane says now. The supervisor re-runs this
        with the routing that AWS's network rules give (`upstreams`, `lb_listen`,
        `fail_open`, ...: see proxy.build_config)."""
        upstreams = [meta.instances[t.id] for t in view.in_service if t.id in meta.instances]
        options = {"lb_listen": meta.lb, "upstreams": upstreams, **routing}
        return proxy.build_config(
            admin_listen=meta.admin,
            health=view.health,
            runtime_dir=self.runtime_dir,
            **options,
        )

    def _start_supervisor(self, meta: Meta) -> None:
        argv = [
            sys.executable, "-m", "infra.local.supervisor",
            "--stack", self.stack, "--runtime-dir", str(self.runtime_dir),
        ]  # fmt: skip
        env = child_env(**FAKE_CREDENTIALS)
        env.update(AWS_ENDPOINT_URL=meta.endpoint, AWS_REGION=self.region)
        proc, _record = self.processes.start(SUPERVISOR, argv, env=env)
        return proc

    def _wait_supervisor(self, proc) -> None:
        """The proxy must follow the control plane: its first sync must have happened."""
        status = self.runtime_dir / "supervisor.json"
        wait_until(lambda: proc.poll() is not None or status.exists(), SUPERVISOR_TIMEOUT, 0.05)
        if not status.exists():
            record = self.processes.record(SUPERVISOR)
            log = record.log if record else "?"
            raise UserError(
                f"the supervisor that keeps Caddy in step with the control plane "
                f"{'exited' if proc.poll() is not None else 'did not sync'} at start-up; "
                f"its log ({log}):\n{log_tail(log)}"
            )

    def _write_grade_endpoints(self, meta: Meta) -> None:
        """So that `make grade LB=<lb>` can check each local instance too."""
        state = read_state(self.state_dir, self.stack)  # the file deploy just wrote
        if state is None:
            return
        state["grade_endpoints"] = {"lb": meta.lb, "instances": list(meta.instances.values())}
        write_state(self.state_dir, self.stack, state)

    # --- previous runs -------------------------------------------------------------------
    def _live_records(self):
        return [r for r in self.processes.records() if is_ours(r)]

    def _refuse_or_clean_previous(self) -> None:
        """Refuse (touching nothing) while another command owns a testbed of this stack: one
        that `local up` left running, or one that a running `up`/`test` is starting or
        using. Clean up after a run that was killed."""
        meta = self.meta
        live = self._live_records()
        if meta is None and not live:
            return
        owner_running = meta is not None and meta.owner_running()
        if meta is not None and (owner_running or (meta.mode == "up" and live)):
            if owner_running:
                what = f"owned by a running `local {meta.mode}` (pid {meta.owner_pid})"
            else:
                what = "left running by `local up`"
            running = ", ".join(r.describe() for r in live) or "starting"
            shows = f" (`{self.command('status')}` shows it)"
            raise StartRefused(
                f"a local testbed for stack {self.stack}, {what}, is still running "
                f"({running}); nothing was changed. {self.down_command()} stops it{shows}."
            )
        if live:
            self.progress(
                "a previous run was killed and left "
                f"{', '.join(r.describe() for r in live)}: cleaning up"
            )
        self.down()

    def _own_runtime_dir(self) -> bool:
        return self.runtime_dir != (Path(RUNTIME_ROOT) / self.stack).resolve()

    def command(self, action: str, fault: str = "") -> str:
        """`local ACTION` on this testbed as the user types it in a fresh shell: its make
        target, with STACK= beyond the default; with a runtime dir of its own, the module."""
        if self._own_runtime_dir():
            return (f".venv/bin/python -m infra local {action}{f' {fault}' if fault else ''}"
                    f" --stack {self.stack} --runtime-dir {self.runtime_dir}")
        target = "test-local" if action == "test" else f"local-{action}"
        words = [f"make {target}", *([f"FAULT={fault}"] if fault else []),
                 *([f"STACK={self.stack}"] if self.stack != DEFAULT_STACK else [])]
        return " ".join(words)

    def doctor_command(self) -> str:
        """The doctor on this testbed's stack, in a fresh shell: `make doctor` finds the
        endpoint, the region and the fake keys in the stack's state file."""
        if self.state_dir != Path(STATE_DIR).resolve():
            meta = self.meta
            return (f"AWS_ENDPOINT_URL={meta.endpoint if meta else '<endpoint>'} "
                    f"AWS_REGION={self.region} AWS_ACCESS_KEY_ID=testing "
                    f"AWS_SECRET_ACCESS_KEY=testing .venv/bin/python -m infra doctor "
                    f"--stack {self.stack}")
        return f"make doctor STACK={self.stack}"

    def up_command(self, *, lb_port: int | None = None, first_address: str | None = None) -> str:
        """`local up` (or `local test`) with this testbed's flags, one of them changed."""
        lb_port = lb_port or self.lb_port
        first = first_address or self.first_address
        options = " ".join([*([f"--lb-port {lb_port}"] if lb_port != DEFAULT_LB_PORT else []),
                            *([f"--first-address {first}"] if first != FIRST_ADDRESS else [])])
        action = "test" if self.mode == "test" else "up"
        if not options:
            return self.command(action)
        if self._own_runtime_dir():
            return f"{self.command(action)} {options}"
        return f"{self.command(action)} ARGS='{options}'"

    def down_command(self) -> str:
        """How the user stops this testbed: `make local-down`, with STACK= when needed."""
        return f"`{self.command('down')}`"

    def _reset_runtime_dir(self) -> None:
        for sub in ("logs", "seeds", "caddy-data", "caddy-config"):
            _remove_tree(self.runtime_dir / sub)
        for name in ("supervisor.json", "caddy.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.runtime_dir / name).unlink()
        self.runtime_dir.mkdir(parents=True, exist_ok=True)

    # --- down ----------------------------------------------------------------------------
    def down(self) -> dict:
        """Stop every process, destroy the stack's resources in moto, stop moto.

        Works from the pid files alone, so also after the process that ran `up` was killed.
        Ctrl-C (or SIGTERM) does not interrupt it: it skips the stack's destruction (moto's
        resources go with moto) and SIGKILLs at once. `left` names any process that still
        runs after all that; its pid file stays, for the next `down`.
        """
        with INTERRUPTS.cleaning():
            meta = self.meta
            report: dict = {"stopped": [], "destroyed": False, "listening": [], "left": [],
                            "interrupted": False}
            # Everything but moto stops in parallel while the stack is destroyed: that needs moto.
            others = [r.name for r in self.processes.records() if r.name != motoserver.NAME]
            signalled = self.processes.signal_many(others)
            try:
                with INTERRUPTS.cuttable():
                    if meta and meta.endpoint and motoserver.responds(meta.endpoint):
                        self.progress(f"destroying stack {self.stack} in the moto server "
                                      "with infra.aws.stack")
                        from infra.aws.stack import Stack

                        with emulator_environment(meta.endpoint, meta.region):
                            clients = self._clients_for(meta)
                            Stack(clients, self.settings(), progress=self._sub_progress).destroy()
                        report["destroyed"] = True
            except KeyboardInterrupt:
                report["interrupted"] = True
                self.progress("interrupted: not destroying the stack in moto (its resources go "
                              "with it); stopping every process now")
            finally:
                report["stopped"] += self.processes.wait_stopped(signalled)
            report["stopped"] += self.processes.stop_all()
            if (self.runtime_dir / "machines").is_dir():  # what a killed machine left
                from infra.local.machines import backend as machines

                machines.sweep(self.runtime_dir)
                if meta is not None and meta.backend == MACHINES:
                    meta.instances = {}  # gone with their namespaces: never probe them
            left = [r for r in self.processes.records() if is_ours(r)]
            report["left"] = [r.describe() for r in left]
            report["left_pids"] = [r.pid for r in left]
            report["interrupted"] = report["interrupted"] or INTERRUPTS.hurry.is_set()
            state_file = Path(meta.state_file) if meta and meta.state_file else self._state_file()
            with contextlib.suppress(FileNotFoundError):
                # The resources it describes lived in the moto server, which is gone now.
                state_file.unlink()
            if meta:
                report["listening"] = [
                    a for a in [meta.lb, meta.admin, meta.endpoint.removeprefix("http://"),
                                *meta.instances.values()]
                    if a and listening(*_split(a))
                ]  # fmt: skip
            if not report["left"]:  # else keep it: the next `down` needs to find them
                with contextlib.suppress(FileNotFoundError):
                    self.meta_path.unlink()
            self._clients = None
            return report

    def _clients_for(self, meta: Meta) -> Clients:
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
        """SIGKILL the instance's app (its whole process group): a crash, not a shutdown."""
        self._instance_address(instance_id)
        if self._require_meta().backend == MACHINES:  # `systemctl kill -s KILL` inside
            from infra.local.machines import backend as machines

            return machines.kill_instance(self, instance_id)
        record = self.processes.record(app_process_name(instance_id))
        if record is None or not is_ours(record):
            raise UserError(f"instance {instance_id}'s app is not running")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
        wait_until(lambda: not alive(record.pid), 5.0)

    def start_instance(self, instance_id: str) -> None:
        """Start the instance's app again, with the same SEED_FILE and address."""
        address = self._instance_address(instance_id)
        if self._require_meta().backend == MACHINES:  # systemd restarts it, or a new boot
            from infra.local.machines import backend as machines

            return machines.start_instance(self, instance_id)
        record = self.processes.record(app_process_name(instance_id))
        if record is not None and is_ours(record):
            raise UserError(f"instance {instance_id}'s app is already running (pid {record.pid})")
        host, port = _split(address)
        ensure_port_free(host, port, f"instance {instance_id}'s address", "Stop what uses it.")
        proc = self._spawn_app(instance_id, address)
        self._wait_app_ready(instance_id, address, proc)

    # --- status --------------------------------------------------------------------------
    def status(self) -> dict:
        meta = self._require_meta()
        records = {r.name: r for r in self.processes.records()}
        processes = [
            {"name": name, "pid": r.pid, "running": is_ours(r), "log": r.log}
            for name, r in records.items()
        ]
        supervised = _read_json(self.runtime_dir / "supervisor.json")
        apps = supervised.get("apps", {})
        instances = []
        for iid, address in meta.instances.items():
            record = records.get(app_process_name(iid))
            running = bool(record and is_ours(record))
            app = apps.get(iid) or {"app": "running" if running else "down", "why": ""}
            if iid in meta.not_started:
                app = {"app": "not started", "why": meta.not_started[iid]}
            instances.append({
                "id": iid,
                "address": address,
                "running": running,
                "process": app["app"],
                "why": app.get("why", ""),
                "health": health_ok(address),
            })  # fmt: skip
        control_plane: dict[str, str] = {}
        target_health: dict[str, dict] = {}
        moto_up = bool(meta.endpoint) and motoserver.responds(meta.endpoint)
        if moto_up:
            with contextlib.suppress(Exception):
                view = self.read_stack()
                control_plane = {t.id: t.state for t in view.targets}
                target_health = {t.id: {"port": t.port, "state": t.state, "reason": t.reason,
                                        "description": t.description} for t in view.targets}
        caddy = proxy.Caddy(meta.admin, self.runtime_dir) if meta.admin else None
        caddy_view: dict[str, str] = {}
        if caddy is not None:
            current = caddy.config()
            if current:
                upstreams = proxy.upstreams_of(current)
                by_address = {a: i for i, a in meta.instances.items()}
                caddy_view = {by_address.get(a, a): s for a, s in caddy.health(upstreams).items()}
        return {
            "stack": self.stack,
            "mode": meta.mode,
            "endpoint": meta.endpoint,
            "moto": moto_up,
            "lb": meta.lb,
            "lb_listening": bool(meta.lb) and listening(*_split(meta.lb)),
            "admin": meta.admin,
            "processes": processes,
            "instances": instances,
            "control_plane": control_plane,  # moto's target states (from the health checks)
            "target_health": target_health,  # ... with AWS's reason and description
            "caddy": caddy_view,  # Caddy's active health checks: what its rotation follows
            "supervisor": supervised,
        }

    def status_json(self) -> dict:
        """`local status --json`: what the testbed runs, for scripts and tests."""
        status = self.status()
        supervised = status["supervisor"]
        synced = supervised.get("synced_at")
        return {
            "stack": status["stack"],
            "mode": status["mode"],
            "endpoint": status["endpoint"],
            "endpoint_answers": status["moto"],
            "load_balancer": status["lb"],
            "load_balancer_listening": status["lb_listening"],
            "front": supervised.get("front"),  # serve / drop / refuse / reset, and why
            "fail_open": supervised.get("fail_open"),
            "instances": [{
                "id": inst["id"],
                "address": inst["address"],
                "process": inst["process"],
                "why": inst["why"],
                "answers_health": inst["health"],
                "health": status["target_health"].get(inst["id"]),  # what moto reports
                "route": supervised.get("routes", {}).get(inst["id"]),
            } for inst in status["instances"]],
            "last_sync": synced,
            "last_sync_age_s": round(time.time() - synced, 3) if synced else None,
            "processes": status["processes"],
        }


def _check_loopback(address: str, what: str) -> None:
    """Instances must stay on this machine's loopback: never bind an app to a real interface."""
    try:
        ok = ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"{what} {address!r} must be an IPv4 loopback address (127.x.y.z)")


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


def _other_block(first: str) -> str:
    """A first address 256 further on: a block of loopback addresses clear of this one."""
    return str(ipaddress.IPv4Address(first) + 256)


def health_ok(address: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"http://{address}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill <pid>` of a running command cleans up like Ctrl-C does; a second Ctrl-C (or
    kill) during that clean-up hurries it rather than leaving processes behind
    (processes.Interrupts)."""
    try:
        with INTERRUPTS.installed():
            yield
    finally:
        if INTERRUPTS.interrupted and threading.current_thread() is threading.main_thread():
            # The command ends because of it, its clean-up done: one more Ctrl-C could only
            # turn its exit code 130 into a traceback.
            for sig in INTERRUPTS.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
