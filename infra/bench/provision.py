"""Provisioning against a moto server: wall time and AWS API calls of deploy and destroy.

Calls are counted with botocore's event hooks: a `before-call.*.*` handler on the boto3
session sees every API call each client makes (waiter polls included, retries not), before
it is sent. Every client is made from that session after the handler is registered, so
none is missed. Fewer calls means a faster real deploy: on AWS each costs a round trip.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from infra.aws.emulator import FAKE_CREDENTIALS, patched_environ
from infra.bench.procs import LOOPBACK, ServerProcess
from infra.local.processes import free_port

# The testbed's fake credentials, and no profile files: nothing of the user's reaches moto.
FAKE_AWS_ENV = {
    **FAKE_CREDENTIALS,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class ProvisionResult:
    deploy_s: float = 0.0
    destroy_s: float = 0.0
    deploy_calls: Counter = field(default_factory=Counter)
    destroy_calls: Counter = field(default_factory=Counter)
    instances: int = 0


class CallCounter:
    """Counts API calls as `service.Operation`, e.g. `ec2.RunInstances`."""

    def __init__(self):
        self.calls: Counter = Counter()

    def __call__(self, model=None, **_kwargs) -> None:
        if model is not None:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def attach(self, session) -> None:
        """`session` is a boto3 Session; its clients copy its handlers when created."""
        session.events.register("before-call.*.*", self)

    def take(self) -> Counter:
        taken, self.calls = self.calls, Counter()
        return taken


def moto_server(work: Path, port: int) -> ServerProcess:
    argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    return ServerProcess("moto-server", argv, work, env=FAKE_AWS_ENV)


def run_provisioning(work: Path, progress, stack_name: str = "bench") -> ProvisionResult:
    # Imported here: provisioning is its own part, and a bench without it still runs.
    from infra.aws.clients import Clients, resolve_target
    from infra.aws.stack import Stack
    from infra.config import Settings

    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    result = ProvisionResult()
    with moto_server(work, port) as moto, patched_environ({**FAKE_AWS_ENV,
                                                        "AWS_ENDPOINT_URL": endpoint}):
        moto.wait_http(f"{endpoint}/moto-api/", timeout=30)
        progress(f"  moto server up on {endpoint}")
        target = resolve_target("aws", "us-east-1")
        # moto loads each service on its first request: pay that before the clock starts,
        # with clients that are not counted.
        warm = Clients(target)
        warm.ec2.describe_vpcs()
        warm.elbv2.describe_load_balancers()
        warm.ssm.describe_parameters()
        clients = Clients(target)
        counter = CallCounter()
        counter.attach(clients.session)
        settings = Settings.fast(stack=stack_name, state_dir=str(work / "state"))
        stack = Stack(clients, settings, progress=_indented(progress))

        started = time.monotonic()
        state = stack.deploy()
        result.deploy_s = time.monotonic() - started
        result.deploy_calls = counter.take()
        result.instances = len(state.get("instances", []))
        progress(f"  deploy: {result.deploy_s:.2f}s, "
                 f"{sum(result.deploy_calls.values())} API calls")

        started = time.monotonic()
        stack.destroy()
        result.destroy_s = time.monotonic() - started
        result.destroy_calls = counter.take()
        progress(f"  destroy: {result.destroy_s:.2f}s, "
                 f"{sum(result.destroy_calls.values())} API calls")
    return result


def _indented(progress):
    return lambda message: progress(f"    {message}")
