"""`local status`: one document of what a testbed runs and how each part sees the targets.

`TestbedStatus` is that document. `to_json()` is `local status --json` (for scripts and
tests) and `render()` is the text that `local status` prints; both show the same fields.
Per instance, three views of health that can disagree, and that is the point:

- `answers_health`: its app answers GET /health with 200 when asked directly;
- `health`: what moto's DescribeTargetHealth says (the supervisor's health checks, with AWS's
  state, reason and description), or None when the instance is not registered;
- `caddy`: Caddy's own active health checks, which its rotation follows.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

from infra.local import motoserver, proxy
from infra.local.processes import is_ours, listening
from infra.local.runtime import (
    SUPERVISOR_STATUS,
    app_process_name,
    health_ok,
    read_json,
    split_address,
)


@dataclass
class ProcessStatus:
    name: str
    pid: int
    running: bool
    log: str


@dataclass
class InstanceStatus:
    id: str
    address: str
    process: str  # running, down, stopped, starting, not started (the supervisor's view)
    why: str
    answers_health: bool  # GET /health on its address: 200
    health: dict | None  # DescribeTargetHealth: port, state, reason, description
    route: dict | None  # the supervisor's path to it under the stack's network rules
    caddy: str | None  # Caddy's active health checks: healthy / unhealthy; None: not in rotation


@dataclass
class TestbedStatus:
    __test__ = False  # not a pytest test class, whatever its name says

    stack: str
    mode: str
    endpoint: str  # the control plane: the moto server
    endpoint_answers: bool
    load_balancer: str
    load_balancer_listening: bool
    admin: str  # Caddy's admin API
    front: dict | None  # serve / drop / refuse / reset, and why (the supervisor's)
    fail_open: bool | None
    instances: list[InstanceStatus] = field(default_factory=list)
    last_sync: float | None = None  # when the supervisor last synced Caddy with moto
    last_sync_age_s: float | None = None
    processes: list[ProcessStatus] = field(default_factory=list)

    def instance(self, instance_id: str) -> InstanceStatus:
        return next(i for i in self.instances if i.id == instance_id)

    def to_json(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        lines = [f"stack {self.stack} ({self.mode}), control plane {self.endpoint}: "
                 f"{'answering' if self.endpoint_answers else 'NOT answering'}",
                 f"load balancer http://{self.load_balancer}: "
                 f"{'listening' if self.load_balancer_listening else 'NOT listening'} "
                 f"(Caddy admin API {self.admin})", "", "processes:"]
        lines += [f"  {p.name:<28} pid {p.pid:<8} {'running' if p.running else 'GONE'}"
                  f"   log {p.log}" for p in self.processes]
        lines += ["", "instances:              address              app          /health  moto "
                  "(DescribeTargetHealth)           Caddy"]
        lines += [_instance_line(i) for i in self.instances]
        lines += [f"  {i.id}: app {i.process}: {i.why}" for i in self.instances if i.why]
        if self.front:
            state = self.front["state"] + (" (fail-open: every target unhealthy, traffic to "
                                           "all)" if self.fail_open else "")
            why = f": {self.front['why']}" if self.front["why"] else ""
            lines += ["", f"load balancer front: {state}{why}"]
        lines += [f"  {i.id}: {i.route['why']}" for i in self.instances
                  if i.route and i.route.get("why")]
        if self.last_sync_age_s is not None:
            lines += ["", f"supervisor: last synced the proxy with the control plane "
                          f"{self.last_sync_age_s:.1f}s ago"]
        lines += ["", "moto's column is the target group's health checks as the supervisor "
                  "makes them (AWS's states and reasons); Caddy's column is what its own "
                  "checks found."]
        return "\n".join(lines)


def _instance_line(inst: InstanceStatus) -> str:
    moto = inst.health
    moto_text = (moto["state"] + (f" ({moto['reason']})" if moto["reason"] else "")
                 if moto else "not registered")
    return (f"  {inst.id:<22} {inst.address:<20} {inst.process:<12} "
            f"{'200' if inst.answers_health else 'down':<8} {moto_text:<36} "
            f"{inst.caddy or 'not in rotation'}")


def collect(testbed) -> TestbedStatus:
    """The document for a running testbed (an infra.local.testbed.Testbed): its runtime file,
    its pid files, the supervisor's last sync, moto's and Caddy's answers now."""
    meta = testbed.require_meta()
    records = {r.name: r for r in testbed.processes.records()}
    supervised = read_json(testbed.runtime_dir / SUPERVISOR_STATUS)
    moto_up = bool(meta.endpoint) and motoserver.responds(meta.endpoint)
    target_health = _target_health(testbed) if moto_up else {}
    caddy = _caddy_view(meta, testbed.runtime_dir)
    apps, routes = supervised.get("apps", {}), supervised.get("routes", {})
    instances = []
    for iid, address in meta.instances.items():
        record = records.get(app_process_name(iid))
        running = bool(record and is_ours(record))
        app = apps.get(iid) or {"app": "running" if running else "down", "why": ""}
        if iid in meta.not_started:
            app = {"app": "not started", "why": meta.not_started[iid]}
        instances.append(InstanceStatus(
            id=iid, address=address, process=app["app"], why=app.get("why", ""),
            answers_health=health_ok(address), health=target_health.get(iid),
            route=routes.get(iid), caddy=caddy.get(iid)))
    synced = supervised.get("synced_at")
    return TestbedStatus(
        stack=testbed.stack, mode=meta.mode, endpoint=meta.endpoint, endpoint_answers=moto_up,
        load_balancer=meta.lb,
        load_balancer_listening=bool(meta.lb) and listening(*split_address(meta.lb)),
        admin=meta.admin, front=supervised.get("front"), fail_open=supervised.get("fail_open"),
        instances=instances, last_sync=synced,
        last_sync_age_s=round(time.time() - synced, 3) if synced else None,
        processes=[ProcessStatus(name, r.pid, is_ours(r), r.log) for name, r in records.items()])


def _target_health(testbed) -> dict[str, dict]:
    """DescribeTargetHealth by instance id; {} when moto cannot say now."""
    with contextlib.suppress(Exception):
        view = testbed.read_stack()
        return {t.id: {"port": t.port, "state": t.state, "reason": t.reason,
                       "description": t.description} for t in view.targets}
    return {}


def _caddy_view(meta, runtime_dir) -> dict[str, str]:
    """Caddy's health checks by instance id (by address for an upstream of no instance)."""
    if not meta.admin:
        return {}
    caddy = proxy.Caddy(meta.admin, runtime_dir)
    current = caddy.config()
    if not current:
        return {}
    by_address = {a: i for i, a in meta.instances.items()}
    return {by_address.get(a, a): s for a, s in caddy.health(proxy.upstreams_of(current)).items()}
