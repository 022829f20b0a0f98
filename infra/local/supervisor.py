"""Keeps the local testbed as strict as AWS: every second it reads the stack back from moto
and makes the data path and the control plane say what an ALB in a VPC would.

- The network rules (infra/local/netrules.py): security groups, scheme, listener, target
  ports. Where AWS drops packets the local path drops them too (infra/local/sinks.py): a
  blocked target becomes an upstream that never answers; a load balancer the internet cannot
  reach becomes a listener whose SYNs are dropped.
- Target health (infra/local/health.py): the target group's health checks, made over the
  same path, written to the table that moto's DescribeTargetHealth answers from
  (infra/local/motohook.py).
- Fail-open: with no healthy target and some unhealthy, an ALB routes to all registered
  targets; Caddy then gets the targets without its active health checks.
- The app processes follow their instances' EC2 state (infra/local/lifecycle.py).

Caddy gets a new config through its admin API (no restart) only when something changed.
Runs as `python -m infra.local.supervisor`, started by the testbed; it exits by itself when
the testbed's runtime file goes away or moto stops answering. Its view of things is in
`<runtime>/supervisor.json` (`local status` reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from infra.local import health, motohook, motoserver, netrules, proxy
from infra.local.lifecycle import Lifecycle
from infra.local.machines import backend as machines
from infra.local.mirror import StackView, read_all
from infra.local.runtime import MACHINES, SUPERVISOR_STATUS, read_json
from infra.local.sinks import Sinks

POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 30.0  # moto gone for this long: the testbed is gone too
# An ALB gives up connecting to a target after 10 s and answers 504 (ELB's access log docs:
# "target connection timeout"); a hold sink stands for such a target.
HOLD_TIMEOUT = "10s"


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Supervisor:
    def __init__(self, testbed, poll: float = POLL_SECONDS):
        self.testbed = testbed
        self.poll = poll
        self.status_path = Path(testbed.runtime_dir) / SUPERVISOR_STATUS
        self.table_path = motoserver.health_table(testbed.runtime_dir)
        self.wake = threading.Event()
        self.monitor = health.Monitor(on_change=self._health_changed)
        self.sinks = Sinks()
        self.lifecycle = Lifecycle(testbed, _log)
        # Where Caddy listens while the front is shut, held for it.
        self.parking = self.sinks.reserve("127.0.0.1:0")
        self.memo: dict = {}  # what read_all need not ask again
        self.managed: set[str] = set()  # target groups whose health this supervisor made
        self.pushed: dict | None = None
        self.synced_once = False
        self.last: tuple | None = None  # (view, plan, meta) of the last sync
        self._table_lock = threading.Lock()
        self.booted = False  # instances are machines (infra/local/machines)
        self.rules_applied: dict = {}  # their nftables, as last applied

    # --- target health -> moto ---------------------------------------------------------
    def _health_changed(self) -> None:
        self._write_table()
        self.wake.set()

    def _write_table(self) -> None:
        with self._table_lock:
            group = self.monitor.group
            # Groups managed before keep an (empty) entry: a target registered there again is
            # `initial` until checked, never moto's constant `healthy`.
            groups: dict[str, dict] = {arn: {} for arn in self.managed}
            if group:
                groups[group] = self.monitor.entries()
            motohook.write_table(self.table_path, groups)

    def _probes(self, view: StackView, plan: netrules.Plan,
                meta) -> dict[str, health.HealthCheckProbe]:
        hc = view.health
        if hc is None or not view.target_group_arn:
            return {}
        probes = {}
        for target in view.in_service:
            route = plan.routes.get(target.id)
            if route is None or target.id not in meta.instances:
                continue
            key = motohook.target_key(target.id, target.port)
            probes[key] = health.HealthCheckProbe(
                address=self._dial(route.health, target.id, route.health_port,
                                   meta.instances[target.id]),
                path=hc.path, timeout=float(hc.timeout), interval=float(hc.interval),
                healthy=hc.healthy, unhealthy=hc.unhealthy, matcher=hc.matcher,
                enabled=hc.enabled)
        return probes

    def _adopt(self, view: StackView) -> dict[str, health.Health]:
        """At the first look, deploy has already waited for moto's `healthy`: carry it on
        (the testbed checked each app's /health before starting Caddy). A table left by an
        earlier supervisor of this testbed wins."""
        if self.synced_once or not view.target_group_arn:
            return {}
        previous = motohook.read_table(self.table_path).get(view.target_group_arn, {})
        adopted = {}
        for target in view.in_service:
            key = motohook.target_key(target.id, target.port)
            entry = previous.get(key) or ({"State": "healthy"} if target.state == "healthy"
                                          else None)
            if entry:
                adopted[key] = health.Health(
                    state=entry["State"], reason=entry.get("Reason"),
                    description=entry.get("Description"),
                    passes=view.health.healthy if entry["State"] == "healthy" else 0)
        return adopted

    # --- the data path -----------------------------------------------------------------
    def _dial(self, kind: str, target_id: str, port: int, app_address: str) -> str:
        """The local address that stands for `target_id`'s AWS port `port`."""
        key = motohook.target_key(target_id, port)
        if self.booted:  # the machine's own kernel drops or refuses: no stand-in
            return machines.dial(app_address, port)
        if kind == netrules.HOLD:
            return self.sinks.hold(key)
        if kind == netrules.REFUSE:
            return self.sinks.refuse(key)
        return app_address  # netrules says APP only for the app's port

    def _routing(self, view: StackView, plan: netrules.Plan, meta) -> dict:
        upstreams = []
        for target in view.in_service:
            route = plan.routes.get(target.id)
            if route is None or target.id not in meta.instances:
                continue
            upstreams.append(self._dial(route.traffic, target.id, route.port,
                                        meta.instances[target.id]))
        response = None
        action = plan.action
        if plan.front.state == netrules.RESET:
            response = {"abort": True}
        elif action.kind == "fixed-response":
            headers = {"Content-Type": action.content_type} if action.content_type else {}
            response = {"status": action.status, "body": action.body, "headers": headers}
        elif action.kind == "redirect":
            response = {"status": action.status, "headers": {"Location": action.location}}
        serving = plan.front.state in (netrules.SERVE, netrules.RESET)
        return {
            "upstreams": upstreams,
            "lb_listen": meta.lb if serving else self.parking,
            "fail_open": self.monitor.fail_open(),
            "response": response,
            "hold_timeout": HOLD_TIMEOUT if any(self.sinks.is_hold(u) for u in upstreams)
            else None,
            # A machine's dropped SYNs: an ALB gives up connecting after 10 s too.
            "dial_timeout": HOLD_TIMEOUT if self.booted else None,
        }

    def _apply(self, caddy: proxy.Caddy, desired: dict, front: netrules.Front, lb: str) -> None:
        """Push the config and hand the load balancer's address between Caddy and the drop
        sink in the right order: whoever gives it up goes first."""
        if front.state in (netrules.SERVE, netrules.RESET):
            self.sinks.close_drop()
        if desired != self.pushed:
            # Compare with what Caddy runs, so a fresh supervisor does not reload (a reload
            # resets Caddy's health state) when nothing changed.
            if caddy.config() != desired:
                before = proxy.upstreams_of(self.pushed) if self.pushed else "(initial)"
                caddy.load(desired)
                mode = "fail-open, " if self.monitor.fail_open() else ""
                _log(f"targets {before} -> {proxy.upstreams_of(desired)} ({mode}listening on "
                     f"{proxy.listen_of(desired)}, front {front.state}): config pushed")
            self.pushed = desired
        # Held whenever Caddy or the drop sink lets go of it (close_drop holds it too), so
        # that it is still free for whichever takes it next.
        self.sinks.reserve(lb)
        if front.state == netrules.DROP:
            self.sinks.open_drop(lb)
        elif front.state == netrules.REFUSE:
            self.sinks.close_drop()

    # --- one sync ------------------------------------------------------------------------
    def sync(self, meta) -> None:
        view, net = read_all(self.testbed.clients(), self.testbed.stack, self.memo)
        app_port = self.testbed.settings().app_port
        plan = netrules.plan(view, net, app_port)
        self.booted = meta.backend == MACHINES
        if self.booted:  # the security groups as nftables in each machine
            for iid in machines.apply_security_groups(self.testbed.runtime_dir, net,
                                                      self.rules_applied):
                _log(f"instance {iid}: security groups applied as nftables rules")
        self.lifecycle.sync(view, net, adopt=self.synced_once and bool(meta.admin))
        meta = self.testbed.meta or meta  # the lifecycle may have added an instance
        group = view.target_group_arn
        adopted = self._adopt(view)
        if group:
            with self._table_lock:  # the health threads read it when they write the table
                self.managed.add(group)
        self.monitor.align(_caddy_started(self.testbed.runtime_dir))
        self.monitor.update(group, self._probes(view, plan, meta), adopted)
        if not self.synced_once:
            self._write_table()
        self.synced_once = True
        self.last = (view, plan, meta)
        self.route()

    def route(self) -> None:
        """Caddy's config from the last look at the stack and the health checks as they are
        now. A health change calls this at once (no describe calls): fail-open follows the
        last target to fail within milliseconds, before Caddy's own checks empty its
        rotation."""
        if self.last is None:
            return
        view, plan, meta = self.last
        desired = self.testbed.proxy_config(view, meta, **self._routing(view, plan, meta))
        self._apply(proxy.Caddy(meta.admin, self.testbed.runtime_dir), desired, plan.front,
                    meta.lb)
        self._write_status(view, plan, desired, meta)

    def _write_status(self, view: StackView, plan: netrules.Plan, config: dict, meta) -> None:
        upstreams = proxy.upstreams_of(config)
        checks = self.monitor.health()
        routes = {}
        for target in view.in_service:
            route = plan.routes.get(target.id)
            if route is None:
                continue
            routes[target.id] = {
                "port": route.port, "traffic": route.traffic, "why": route.why,
                "health_port": route.health_port, "health": route.health,
                "health_why": route.health_why,
                "check": vars(checks.get(motohook.target_key(target.id, target.port),
                                         health.Health())),
            }
        status = {
            "synced_at": time.time(),
            "upstreams": upstreams,
            "control_plane": {t.id: t.state for t in view.targets},
            "front": {"state": plan.front.state, "why": plan.front.why},
            "listening": proxy.listen_of(config),
            "action": plan.action.kind,
            "fail_open": self.monitor.fail_open(),
            "target_group": view.target_group_arn,
            "routes": routes,
            "apps": self.lifecycle.status(),
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.status_path)

    # --- the loop -------------------------------------------------------------------------
    def _wait_routing(self, until: float) -> None:
        """Until the next sync: a health state that changes re-routes at once."""
        while (left := until - time.monotonic()) > 0:
            if self.wake.wait(left):
                self.wake.clear()
                try:
                    self.route()
                except Exception as exc:  # Caddy busy: the next sync pushes it
                    _log(f"re-routing failed: {type(exc).__name__}: {exc}")

    def run(self) -> int:
        last_ok = time.monotonic()
        try:
            while True:
                meta = self.testbed.meta
                if meta is None:
                    _log("the testbed's runtime file is gone: exiting")
                    return 0
                if not meta.admin:  # the testbed has not started Caddy yet
                    time.sleep(self.poll / 4)
                    continue
                try:
                    self.sync(meta)
                    last_ok = time.monotonic()
                except Exception as exc:  # moto or Caddy briefly unavailable: keep polling
                    _log(f"sync failed: {type(exc).__name__}: {exc}")
                    if not motoserver.responds(meta.endpoint) and (
                        time.monotonic() - last_ok > GIVE_UP_SECONDS
                    ):
                        _log("moto has not answered for a while: exiting")
                        return 1
                self._wait_routing(time.monotonic() + self.poll)
        finally:
            self.monitor.stop()
            self.sinks.close()


def _caddy_started(runtime_dir) -> float | None:
    """When Caddy last (re)started its apps, and so its health checks: its last `started`."""
    started = [e for e in proxy.read_events(runtime_dir) if e.get("name") == "started"]
    return float(started[-1]["ts"]) if started else None


def run(testbed, poll: float = POLL_SECONDS) -> int:
    """The loop; `testbed` is an infra.local.testbed.Testbed attached to a running testbed."""
    return Supervisor(testbed, poll).run()


def read_status(runtime_dir: str | Path) -> dict:
    return read_json(Path(runtime_dir) / SUPERVISOR_STATUS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.supervisor",
        description="keep a local testbed's Caddy and moto's target health in step with its "
                    "control plane, as strict as AWS (internal)",
    )
    parser.add_argument("--stack", required=True)
    parser.add_argument("--runtime-dir", required=True)
    args = parser.parse_args(argv)
    from infra.local.testbed import Testbed

    try:
        return run(Testbed(args.stack, runtime_dir=args.runtime_dir))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
