"""deploy / destroy / plan / status of one stack: the order, the waits, the tags.

    stack = Stack(clients, settings)
    state = stack.deploy()     # converges; returns (and writes) the state dict
    stack.status()             # what exists, target health, DNS name
    stack.plan()               # what deploy would do; changes nothing
    stack.destroy()            # deletes everything tagged with the stack, in dependency order

The same code runs against real AWS, LocalStack, a moto server and moto in process: the
clients decide where the calls go, nothing here does. Every resource is found again by its
tags, so deploy converges when run twice, after a failure half-way, or with the state file
lost; destroy works after all of those and when run twice.
"""

from __future__ import annotations

from collections.abc import Callable

from infra.aws import preflight
from infra.aws.clients import Clients
from infra.aws.compute import Instances, summary
from infra.aws.decisions import Decisions, decide
from infra.aws.deploy_plan import plan_lines
from infra.aws.failures import DeployError, stepping
from infra.aws.loadbalancer import LoadBalancer
from infra.aws.network import Network, NetworkIds
from infra.aws.security_groups import SecurityGroups
from infra.aws.survey import Survey, status_document
from infra.aws.userdata import ensure_fits, render_user_data
from infra.config import Settings
from infra.console import Progress
from infra.errors import UserError
from infra.state import remove_state, write_state


class Stack:
    """One stack's AWS concerns, each a small class of its own (network, security groups,
    instances, load balancer), driven in dependency order."""

    def __init__(self, clients: Clients, settings: Settings,
                 progress: Callable[[str], None] | None = None):
        self.clients = clients
        self.settings = settings
        self.progress = progress or Progress()
        self.network = Network(clients.ec2, settings, self.progress)
        self.security_groups = SecurityGroups(clients.ec2, settings, self.progress)
        self.instances = Instances(clients.ec2, settings, self.progress)
        self.lb = LoadBalancer(clients.elbv2, settings, self.progress)
        self.account: str | None = None  # the preflight's STS answer
        self.caller: str = ""  # the credentials' ARN, from the same answer

    # --- the public API -----------------------------------------------------------------

    def deploy(self) -> dict:
        decisions = self._decide()
        # Rendered (and measured) before anything is created: an oversize script is a preflight
        # failure, not a half-built stack.
        user_data = self._user_data()
        with stepping("surveying the stack"):
            survey = self._survey()
        self.progress(f"plan for stack {self.settings.stack} "
                      f"({self.clients.target.describe()}):")
        for line in self._plan_lines(decisions, survey):
            self.progress(f"  {line}")
        for note in decisions.notes:
            self.progress(f"note: {note}")
        net, lb, tg_arn, ids = self._build(decisions, survey, user_data)
        with stepping("reading back the stack"):
            state = self._state(net.vpc_id, lb, tg_arn, ids, decisions)
            write_state(self.settings.state_dir, self.settings.stack, state)
        if self.settings.wait_for_healthy:
            self._await_healthy(state, tg_arn, ids)
        return state

    def plan(self) -> list[str]:
        """What deploy would create, change or keep. Only describe calls: changes nothing."""
        decisions = self._decide()
        with stepping("surveying the stack"):
            survey = self._survey()
        return self._plan_lines(decisions, survey) + [f"note: {n}" for n in decisions.notes]

    def status(self) -> dict:
        self._identify()
        with stepping("reading the stack"):
            return status_document(self.settings.stack, self.clients, self.account,
                                   self._survey(), self.lb)

    def destroy(self) -> dict:
        """Delete everything tagged with the stack, in dependency order, and wait for it."""
        self._identify()
        s = self.settings
        gone: list[str] = []
        # Load balancer and instances go away in parallel; both must be gone before the
        # target group and the security groups can be deleted.
        with stepping("deleting the load balancer"):
            lb_arns = self.lb.delete_load_balancers()
        with stepping("terminating the instances"):
            instance_ids = self.instances.destroy()
        with stepping("waiting for the load balancer to go"):
            self.lb.wait_deleted(lb_arns)
        with stepping("waiting for the instances to terminate"):
            self.instances.wait_terminated(instance_ids)
        gone += [f"load balancer {arn.rsplit('/', 2)[-2]}" for arn in lb_arns]
        gone += [f"instance {i}" for i in instance_ids]
        with stepping("deleting the target group"):
            gone += [f"target group {n}" for n in self.lb.delete_target_groups()]
        with stepping("deleting the network"):
            gone += self.security_groups.destroy(s.dependency_retry_delay,
                                                 s.dependency_retry_budget)
            gone += self.network.destroy(s.dependency_retry_delay, s.dependency_retry_budget)
        remove_state(s.state_dir, s.stack)
        for item in gone:
            self.progress(f"deleted {item}")
        if not gone:
            self.progress(f"nothing tagged Stack={s.stack} was left: nothing to delete")
        return {"stack": s.stack, "deleted": gone}

    # --- the steps ----------------------------------------------------------------------

    def _identify(self) -> dict:
        """The checks every command makes first: the settings, the region, and who the
        credentials are. Any failure exits with one line and leaves nothing behind."""
        preflight.check_settings(self.settings)
        preflight.check_region(self.clients.target.region)
        identity = preflight.check_credentials(self.clients)
        self.account, self.caller = identity.get("Account"), identity.get("Arn") or ""
        return identity

    def _decide(self) -> Decisions:
        """`_identify`, then every check of a deploy that needs no resource (decisions.py)."""
        identity = self._identify()
        return decide(self.clients, self.settings, identity, self.network,
                      self.instances.wanted_names()[0])

    def _build(self, decisions: Decisions, survey: Survey, user_data: str) \
            -> tuple[NetworkIds, dict, str, list[str]]:
        """Create or repair every resource, in dependency order: (network, load balancer,
        target group ARN, instance ids)."""
        with stepping("building the network"):
            net = self.network.ensure(decisions.placement.zones, decisions.default_vpc,
                                      survey.network)
        with stepping("configuring the security groups"):
            lb_sg, app_sg = self.security_groups.ensure(
                net.vpc_id, decisions.public_cidr, decisions.ssh_cidr,
                survey.network.security_groups)
        # The load balancer provisions (minutes on AWS) while the instances boot.
        with stepping("creating the target group"):
            tg_arn = self.lb.ensure_target_group(net.vpc_id, survey.target_groups)
        with stepping("creating the load balancer"):
            lb = self.lb.ensure_load_balancer([subnet for subnet, _ in net.subnets], lb_sg,
                                              survey.load_balancers)
        with stepping("creating the listener"):
            # A load balancer created just now has no listeners: no need to ask.
            known = survey.listeners if survey.load_balancers else []
            self.lb.ensure_listener(lb["LoadBalancerArn"], tg_arn, known)
        with stepping("launching the instances"):
            placement = decisions.placement
            ids = self.instances.ensure(net.subnets, app_sg, placement.instance_type,
                                        user_data, survey.instances, image_id=decisions.image_id,
                                        burstable=placement.burstable)
        with stepping("waiting for the instances"):
            self.instances.wait_running(ids)
        with stepping("registering the targets"):
            self.lb.register(tg_arn, ids)
        with stepping("waiting for the load balancer"):
            self.lb.wait_available(lb["LoadBalancerArn"])
        return net, lb, tg_arn, ids

    def _await_healthy(self, state: dict, tg_arn: str, ids: list[str]) -> None:
        """Wait for healthy targets; the state file gets their health either way."""
        s = self.settings
        try:
            with stepping("waiting for healthy targets"):
                self.lb.wait_in_service(tg_arn, ids)
        except UserError as exc:
            state["target_health"] = self.lb.health(tg_arn)
            write_state(s.state_dir, s.stack, state)
            reasons = "; ".join(f"{h['id']}: {h['state']} ({h['reason'] or '-'}: "
                                f"{h['description'] or '-'})" for h in state["target_health"])
            raise DeployError(
                f"{exc} - targets: {reasons}. The stack is up; run `make status` or "
                "`make doctor` to see why, and deploy again once fixed"
            ) from None
        with stepping("reading target health"):
            state["target_health"] = self.lb.health(tg_arn)
            write_state(s.state_dir, s.stack, state)

    def _survey(self) -> Survey:
        return Survey.take(self.network, self.instances, self.lb)

    def _plan_lines(self, d: Decisions, survey: Survey) -> list[str]:
        return plan_lines(self.settings, d, survey, self.network, self.security_groups,
                          self.instances)

    def _user_data(self) -> str:
        text = self.settings.user_data
        if text is None:
            text = render_default_user_data(self.settings)
        ensure_fits(text)  # RunInstances takes at most 16383 raw bytes
        return text

    def _state(self, vpc_id: str, lb: dict, tg_arn: str, ids: list[str],
               d: Decisions) -> dict:
        lb_arn = lb["LoadBalancerArn"]
        instances = [summary(i) for i in self.instances.describe(ids)]
        return {
            "stack": self.settings.stack,
            "region": self.clients.target.region,
            "endpoint_url": self.clients.target.endpoint_url,
            "lb_dns": lb["DNSName"],
            "lb_arn": lb_arn,
            "target_group_arn": tg_arn,
            "listener_port": self.settings.listener_port,
            "app_port": self.settings.app_port,
            "vpc_id": vpc_id,
            "account": d.account,
            "emulator": self.clients.target.is_emulator,
            "lb_zones": len(lb.get("AvailabilityZones") or []) or 2,
            "instance_type": d.placement.instance_type,
            "instance_type_why": d.placement.why,
            "public_cidr": d.public_cidr,
            "instances": [{k: i[k] for k in ("id", "public_ip", "private_ip", "az", "type",
                                             "launch_time")}
                          for i in instances],
            "target_health": [],
        }


def render_default_user_data(settings: Settings) -> str:
    """The instance boot script (infra.aws.userdata): installs app/ and runs it on the app port."""
    return render_user_data(app_port=settings.app_port, stack=settings.stack)
