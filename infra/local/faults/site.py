"""Where a fault is made: a running testbed, seen as a student sees the AWS console.

Its resources are found the way deploy and destroy find them, through infra.aws's own
classes (Network, LoadBalancer, Instances: the stack's tags, `config.name_tag`), and what the
data path does is read from the supervisor's last look (infra/local/supervisor.py). Nothing
here has a lookup of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from infra.aws.compute import Instances
from infra.aws.loadbalancer import LoadBalancer
from infra.aws.security_groups import SecurityGroups
from infra.config import name_tag, stack_tags
from infra.console import quiet
from infra.errors import UserError
from infra.local import proxy, supervisor
from infra.state import read_state, write_state

# Every state an instance of the stack can be found in while a drill runs.
INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
ROLES = ("app-1", "app-2")




class FaultSite:
    """The testbed a fault is made on: its resources by name, and its state."""

    def __init__(self, testbed, progress: Callable[[str], None] | None = None):
        self.bed = testbed
        self.say = progress or quiet
        self.stack = testbed.stack
        self.settings = testbed.settings()
        self.clients = testbed.clients()
        self.ec2, self.elbv2 = self.clients.ec2, self.clients.elbv2
        self.security_groups = SecurityGroups(self.ec2, self.settings, quiet)
        self.lbs = LoadBalancer(self.elbv2, self.settings, quiet)
        self.compute = Instances(self.ec2, self.settings, quiet)
        # The stack's own instances, by role: their ids do not change while a drill runs.
        self.ids = {role: i["InstanceId"] for role in ROLES
                    if (i := self.instance(role)) is not None}

    # --- the stack's resources, by name --------------------------------------------------
    def group(self, name: str) -> dict:
        groups = self.security_groups.find()
        if name not in groups:
            raise UserError(f"the stack {self.stack} has no security group {name}")
        return groups[name]

    @property
    def app_sg(self) -> dict:
        return self.group(self.security_groups.app_sg_name)

    @property
    def lb_sg(self) -> dict:
        return self.group(self.security_groups.lb_sg_name)

    def lb(self) -> dict:
        found = self.lbs.find_load_balancers()
        if not found:
            raise UserError(f"the stack {self.stack} has no load balancer")
        return found[0]

    def target_group(self, name: str | None = None) -> dict | None:
        name = name or self.settings.tg_name
        return next((tg for tg in self.lbs.find_target_groups()
                     if tg["TargetGroupName"] == name), None)

    def listener(self) -> dict | None:
        """The load balancer's listener on the stack's listener port (80), if it has one."""
        port = self.settings.listener_port
        return next((ls for ls in self.lbs.listeners(self.lb()["LoadBalancerArn"])
                     if ls["Port"] == port), None)

    def instance(self, role: str) -> dict | None:
        wanted = self.settings.name(role)
        return next((i for i in self.compute.find(INSTANCE_STATES) if name_tag(i) == wanted),
                    None)

    @property
    def victim(self) -> dict:
        """The instance the one-instance faults happen to: app-2."""
        found = self.instance("app-2")
        if found is None:
            raise UserError(f"the stack {self.stack} has no instance {self.settings.name('app-2')}")
        return found

    def tags(self, name: str) -> list[dict]:
        return stack_tags(self.stack, name)

    def refresh_state_file(self) -> None:
        """A load balancer made again has a new DNS name and ARN: keep the state file true."""
        state = read_state(self.bed.state_dir, self.stack)
        if state is None:
            return
        lb = self.lb()
        state.update(lb_dns=lb["DNSName"], lb_arn=lb["LoadBalancerArn"])
        write_state(self.bed.state_dir, self.stack, state)

    # --- what the control plane and the data path say ------------------------------------
    def status(self) -> dict:
        return supervisor.read_status(self.bed.runtime_dir)

    def health(self, status: dict | None = None) -> list[dict]:
        """DescribeTargetHealth of the group the listener forwards to (the supervisor's last
        look, `status` if already read, says which: one call, not a re-read of the stack,
        while waiting)."""
        status = self.status() if status is None else status
        tg_arn = status.get("target_group") or self.bed.read_stack().target_group_arn
        return self.lbs.health(tg_arn) if tg_arn else []

    def targets_are(self, state: str, reason: str | None, *, ids: set[str] | None = None,
                    all_of_them: bool = True) -> bool:
        found = [t for t in self.health() if ids is None or t["id"] in ids]
        hits = [t for t in found if t["state"] == state and t["reason"] == reason]
        return bool(found) and (len(hits) == len(found) if all_of_them else bool(hits))

    def front_is(self, state: str) -> bool:
        return self.status().get("front", {}).get("state") == state

    def fails_open(self) -> bool:
        return self.status().get("fail_open") is True

    def app_state(self, instance_id: str) -> str | None:
        """The testbed's word for an instance's app: running, stopped, not started, ..."""
        return self.status().get("apps", {}).get(instance_id, {}).get("app")

    def recovered(self) -> str | None:
        """None when the stack is as deploy left it and serves; else what is still off."""
        status = self.status()
        if status.get("front", {}).get("state") != "serve":
            return f"the front is {status.get('front', {}).get('state')}"
        if status.get("fail_open"):
            return "the load balancer still fails open"
        wanted = set(self.ids.values())
        states = {t["id"]: t["state"] for t in self.health(status)}
        if set(states) != wanted or set(states.values()) != {"healthy"}:
            return f"targets {states}, wanted {sorted(wanted)} healthy"
        apps = status.get("apps", {})
        down = [i for i in wanted if apps.get(i, {}).get("app") != "running"]
        if down:
            return f"apps not running: {down}"
        # Caddy's own checks run a second after the supervisor's: its rotation follows.
        caddy = proxy.Caddy(self.bed.meta.admin, self.bed.runtime_dir).health(
            status.get("upstreams", []))
        out = sorted(a for a, state in caddy.items() if state != "healthy")
        return f"Caddy has not put back {out}" if out else None
