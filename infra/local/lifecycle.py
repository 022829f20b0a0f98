"""The app processes follow their instances' EC2 state, as on AWS.

- An instance stopped (or terminated) in the control plane: its app process stops with it.
- Started again: its app starts again, with its seed file (on AWS the systemd unit the user
  data installed starts it at boot).
- An instance launched by hand into the stack (tagged with it) after `local up`: it gets the
  next loopback address and its app starts, unless its first boot could not install the app
  (infra/local/boot.py), in which case it is recorded in the testbed's `not_started`.
- A terminated instance leaves the testbed (`local status`, the grader's instance list).
- A crashed app (`local kill-instance`, the `app-crashed` drill) stays down: the instance is
  still running, and nothing here restarts what the user broke.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from infra.errors import UserError
from infra.local import boot
from infra.local.mirror import NetworkView, StackView
from infra.local.runtime import MACHINES, app_process_name

DOWN_STATES = ("stopping", "stopped", "shutting-down", "terminated")


def next_address(addresses: list[str]) -> str:
    """The address after the testbed's last: one loopback host each, or one port each."""
    pairs = [a.rsplit(":", 1) for a in addresses]
    hosts = [h for h, _ in pairs]
    if len(set(hosts)) == len(hosts) and hosts:
        prefix = hosts[0].rsplit(".", 1)[0]
        last = max(int(h.rsplit(".", 1)[1]) for h in hosts)
        if last >= 254:
            raise UserError("no loopback address left for another instance")
        return f"{prefix}.{last + 1}:{pairs[0][1]}"
    return f"{hosts[0]}:{max(int(p) for _, p in pairs) + 1}"


class Lifecycle:
    def __init__(self, testbed, log: Callable[[str], None]):
        self.testbed = testbed
        self.log = log
        self.halted: dict[str, str] = {}  # instance id -> the EC2 state that stopped it
        self.starting: set[str] = set()

    def app_running(self, instance_id: str) -> bool:
        return self.testbed.apps.running(instance_id)

    def sync(self, view: StackView, net: NetworkView, adopt: bool) -> None:
        meta = self.testbed.meta
        if meta is None:
            return
        gone = []
        for iid in meta.instances:
            if iid not in net.instances:
                continue  # not described this time: decide nothing on a missing answer
            state = net.instances[iid].get("State", {}).get("Name", "")
            if state == "terminated":
                gone.append(iid)
            if state in DOWN_STATES:
                if iid not in self.halted:
                    self.halted[iid] = state
                    if self.app_running(iid):
                        self.testbed.processes.stop(app_process_name(iid))
                        self.log(f"instance {iid} is {state}: stopped its app")
            elif state == "running" and iid in self.halted:
                del self.halted[iid]
                if iid in meta.not_started:
                    continue  # never installed: a restart changes nothing
                self._start(iid, f"instance {iid} is running again: starting its app")
        if gone:
            self._forget(gone)
        if adopt:
            self._adopt([iid for iid in view.instance_ids if iid not in meta.instances], net)

    def _forget(self, instance_ids: list[str]) -> None:
        """A terminated instance leaves the testbed: its address is free again."""
        meta = self.testbed.meta
        for iid in instance_ids:
            meta.instances.pop(iid, None)
            meta.not_started.pop(iid, None)
            self.halted.pop(iid, None)
            self.log(f"instance {iid} terminated: it leaves the testbed")
        meta.save(self.testbed.meta_path)

    def _adopt(self, new_ids: list[str], net: NetworkView) -> None:
        for iid in new_ids:
            if net.instances.get(iid, {}).get("State", {}).get("Name") != "running":
                continue
            meta = self.testbed.meta
            # a booted machine's address comes with its boot (infra/local/machines)
            address = "" if meta.backend == MACHINES else \
                next_address(list(meta.instances.values()))
            problem = boot.boot_problem(self.testbed.clients().ec2, net.instances[iid])
            meta.instances[iid] = address
            if problem:
                meta.not_started[iid] = problem
            meta.save(self.testbed.meta_path)
            if problem:
                self.log(f"instance {iid} launched at {address}: app not started: {problem}")
            else:
                self._start(iid, f"instance {iid} launched: starting its app at {address}")

    def _start(self, instance_id: str, message: str) -> None:
        if instance_id in self.starting or self.app_running(instance_id):
            return
        self.log(message)
        self.starting.add(instance_id)

        def start() -> None:
            try:
                self.testbed.start_instance(instance_id)
            except UserError as exc:
                self.log(f"instance {instance_id}: its app did not start: {exc}")
            finally:
                self.starting.discard(instance_id)

        threading.Thread(target=start, daemon=True, name=f"start {instance_id}").start()

    def status(self) -> dict[str, dict]:
        meta = self.testbed.meta
        out = {}
        for iid in (meta.instances if meta else {}):
            if iid in meta.not_started:
                out[iid] = {"app": "not started", "why": meta.not_started[iid]}
            elif iid in self.halted:
                out[iid] = {"app": "stopped",
                            "why": f"the instance is {self.halted[iid]}: its app went with it"}
            elif iid in self.starting:
                out[iid] = {"app": "starting", "why": ""}
            elif self.app_running(iid):
                out[iid] = {"app": "running", "why": ""}
            else:
                out[iid] = {"app": "down", "why": "the app process is not running (crashed or "
                            "killed); `local start-instance ID` starts it again"}
        return out
