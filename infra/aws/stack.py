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

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws import failures, preflight
from infra.aws.clients import Clients
from infra.aws.compute import Instances, iso, launch_params, summary
from infra.aws.loadbalancer import LoadBalancer
from infra.aws.network import FoundNetwork, Network, rules_of
from infra.aws.userdata import ensure_fits, render_user_data
from infra.config import LEARNER_LAB_ROLE, Settings
from infra.console import Progress
from infra.errors import UserError
from infra.state import remove_state, write_state


class DeployError(UserError):
    """An AWS call failed part-way; the message names the step and the way forward."""

    exit_code = 1


@dataclass
class Decisions:
    """What preflight settled: the account, the AMI, where the instances go and of which
    type, and who may reach them directly."""

    account: str
    image_id: str
    placement: preflight.Placement
    default_vpc: tuple[str, dict[str, str]] | None
    public_cidr: str | None
    ssh_cidr: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Survey:
    """What of the stack exists right now, found by tags."""

    network: FoundNetwork
    instances: list[dict]
    load_balancers: list[dict]
    target_groups: list[dict]
    listeners: list[dict]


class Stack:
    def __init__(self, clients: Clients, settings: Settings,
                 progress: Callable[[str], None] | None = None):
        self.clients = clients
        self.settings = settings
        self.progress = progress or Progress()
        self.network = Network(clients.ec2, settings, self.progress)
        self.instances = Instances(clients.ec2, settings, self.progress)
        self.lb = LoadBalancer(clients.elbv2, settings, self.progress)
        self._step = "starting"
        self.account: str | None = None  # the preflight's STS answer
        self.caller: str = ""  # the credentials' ARN, from the same answer

    # --- the public API -----------------------------------------------------------------

    def deploy(self) -> dict:
        decisions = self._preflight(for_deploy=True)
        # Rendered (and measured) before anything is created: an oversize script is a preflight
        # failure, not a half-built stack.
        user_data = self._user_data()
        with self._stepping("surveying the stack"):
            survey = self._survey()
        self.progress(f"plan for stack {self.settings.stack} "
                      f"({self.clients.target.describe()}):")
        for line in self._plan_lines(decisions, survey):
            self.progress(f"  {line}")
        for note in decisions.notes:
            self.progress(f"note: {note}")
        s = self.settings
        with self._stepping("building the network"):
            net = self.network.ensure(decisions.placement.zones, decisions.default_vpc,
                                      survey.network)
        subnet_ids = [subnet for subnet, _ in net.subnets]
        with self._stepping("configuring the security groups"):
            lb_sg, app_sg = self.network.ensure_security_groups(
                net.vpc_id, decisions.public_cidr, decisions.ssh_cidr, survey.network)
        # The load balancer provisions (minutes on AWS) while the instances boot.
        with self._stepping("creating the target group"):
            tg_arn = self.lb.ensure_target_group(net.vpc_id, survey.target_groups)
        with self._stepping("creating the load balancer"):
            lb = self.lb.ensure_load_balancer(subnet_ids, lb_sg, survey.load_balancers)
        with self._stepping("creating the listener"):
            # A load balancer created just now has no listeners: no need to ask.
            known = survey.listeners if survey.load_balancers else []
            self.lb.ensure_listener(lb["LoadBalancerArn"], tg_arn, known)
        with self._stepping("launching the instances"):
            placement = decisions.placement
            ids = self.instances.ensure(net.subnets, app_sg, placement.instance_type,
                                        user_data, survey.instances, image_id=decisions.image_id,
                                        burstable=placement.burstable)
        with self._stepping("waiting for the instances"):
            self.instances.wait_running(ids)
        with self._stepping("registering the targets"):
            self.lb.register(tg_arn, ids)
        with self._stepping("waiting for the load balancer"):
            self.lb.wait_available(lb["LoadBalancerArn"])
        with self._stepping("reading back the stack"):
            state = self._state(net.vpc_id, lb, tg_arn, ids, decisions)
            write_state(s.state_dir, s.stack, state)
        if s.wait_for_healthy:
            try:
                with self._stepping("waiting for healthy targets"):
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
            with self._stepping("reading target health"):
                state["target_health"] = self.lb.health(tg_arn)
                write_state(s.state_dir, s.stack, state)
        return state

    def plan(self) -> list[str]:
        """What deploy would create, change or keep. Only describe calls: changes nothing."""
        decisions = self._preflight(for_deploy=True)
        with self._stepping("surveying the stack"):
            survey = self._survey()
        return self._plan_lines(decisions, survey) + [f"note: {n}" for n in decisions.notes]

    def status(self) -> dict:
        self._preflight(for_deploy=False)
        with self._stepping("reading the stack"):
            survey = self._survey()
            lb = survey.load_balancers[0] if survey.load_balancers else None
            tg = survey.target_groups[0] if survey.target_groups else None
            return {
                "stack": self.settings.stack,
                "region": self.clients.target.region,
                "account": self.account,
                "emulator": self.clients.target.is_emulator,
                "endpoint_url": self.clients.target.endpoint_url,
                "vpc_id": survey.network.vpc["VpcId"] if survey.network.vpc else None,
                "subnets": [{"id": sn["SubnetId"], "az": sn["AvailabilityZone"],
                             "cidr": sn["CidrBlock"]}
                            for sn in survey.network.subnets.values()],
                "security_groups": [
                    {"id": g["GroupId"], "name": g["GroupName"],
                     "rules": sorted(f"tcp/{p} from {src}" for p, _, src in rules_of(g))}
                    for g in survey.network.security_groups.values()
                ],
                "load_balancer": None if lb is None else {
                    "name": lb["LoadBalancerName"], "arn": lb["LoadBalancerArn"],
                    "dns": lb["DNSName"], "state": lb.get("State", {}).get("Code"),
                    "scheme": lb.get("Scheme"),
                    "created": iso(lb.get("CreatedTime")),
                    "zones": len(lb.get("AvailabilityZones") or []),
                },
                "listeners": [{"port": li["Port"], "protocol": li["Protocol"],
                               "forwards_to": [a.get("TargetGroupArn")
                                               for a in li.get("DefaultActions") or []]}
                              for li in survey.listeners],
                "target_group": None if tg is None else {
                    "name": tg["TargetGroupName"], "arn": tg["TargetGroupArn"],
                    "port": tg["Port"], "protocol": tg["Protocol"],
                    "health_check_path": tg.get("HealthCheckPath"),
                },
                "target_health": self.lb.health(tg["TargetGroupArn"]) if tg else [],
                "instances": [summary(i) for i in survey.instances],
            }

    def destroy(self) -> dict:
        """Delete everything tagged with the stack, in dependency order, and wait for it."""
        self._preflight(for_deploy=False)
        s = self.settings
        gone: list[str] = []
        # Load balancer and instances go away in parallel; both must be gone before the
        # target group and the security groups can be deleted.
        with self._stepping("deleting the load balancer"):
            lb_arns = self.lb.delete_load_balancers()
        with self._stepping("terminating the instances"):
            instance_ids = self.instances.destroy()
        with self._stepping("waiting for the load balancer to go"):
            self.lb.wait_deleted(lb_arns)
        with self._stepping("waiting for the instances to terminate"):
            self.instances.wait_terminated(instance_ids)
        gone += [f"load balancer {arn.rsplit('/', 2)[-2]}" for arn in lb_arns]
        gone += [f"instance {i}" for i in instance_ids]
        with self._stepping("deleting the target group"):
            gone += [f"target group {n}" for n in self.lb.delete_target_groups()]
        with self._stepping("deleting the network"):
            gone += self.network.destroy(s.dependency_retry_delay, s.dependency_retry_budget)
        remove_state(s.state_dir, s.stack)
        for item in gone:
            self.progress(f"deleted {item}")
        if not gone:
            self.progress(f"nothing tagged Stack={s.stack} was left: nothing to delete")
        return {"stack": s.stack, "deleted": gone}

    # --- the steps ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _stepping(self, step: str, *, created_nothing: bool = False) -> Iterator[None]:
        """Turn an AWS error into one line naming the step and the way forward, by its class
        (infra/aws/failures.py): denied, a limit, credentials, the network, or other."""
        self._step = step
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise DeployError(failures.explain(exc, step, created_nothing=created_nothing)) \
                from None

    def _preflight(self, *, for_deploy: bool) -> Decisions | None:
        """Every check that needs no resource, before the first one is created. Any failure
        here exits with one line and leaves nothing behind."""
        s, target = self.settings, self.clients.target
        preflight.check_settings(s)
        preflight.check_region(target.region)
        identity = preflight.check_credentials(self.clients)
        self.account, self.caller = identity.get("Account"), identity.get("Arn") or ""
        if not for_deploy:
            return None
        learner_lab = LEARNER_LAB_ROLE in self.caller
        with self._stepping("choosing the instance type and zones", created_nothing=True):
            default_vpc = None
            zones = None
            if s.use_default_vpc:
                vpc_id, by_zone = self.network.default_vpc()
                default_vpc, zones = (vpc_id, by_zone), sorted(by_zone)
            placement = preflight.choose_placement(self.clients, s, zones,
                                                   learner_lab=learner_lab)
            if learner_lab:
                preflight.check_learner_lab_instances(self.clients, s)
        with self._stepping("looking up the Amazon Linux 2023 AMI", created_nothing=True):
            image_id = preflight.resolve_image(self.clients, placement.architecture)
        if s.key_name:
            with self._stepping("checking the key pair", created_nothing=True):
                preflight.check_key_pair(self.clients, s.key_name)
        with self._stepping("trying RunInstances as a dry run", created_nothing=True):
            params = launch_params(s, self.instances.wanted_names()[0], placement.instance_type,
                                   image_id, burstable=placement.burstable)
            dry_run_note = preflight.check_launch_allowed(self.clients, params)
        # Last, so that against LocalStack's free code (no ELBv2) the whole preflight has run.
        with self._stepping("checking the load balancing service", created_nothing=True):
            preflight.check_elbv2_available(self.clients)
        notes = [f"instance type {placement.instance_type}: {placement.why}; in "
                 f"{' and '.join(placement.zones)}, which both offer it"
                 + ("" if placement.architecture == "x86_64" else
                    f"; {placement.architecture}, so the {placement.architecture} Amazon Linux "
                    "2023 AMI")]
        if placement.burstable:
            notes.append("CPU credits: standard (never billed beyond the hourly price)")
        if dry_run_note:
            notes.append(dry_run_note)
        chosen = preflight.public_cidr_choice(s.public_access)  # None: "me"
        explicit = None if s.public_access in ("me", "any") else chosen
        mine = None
        if s.public_access == "me" or (s.key_name and explicit is None):
            if target.is_emulator:
                notes.append("the deployer's IP is never looked up against an emulator: "
                             "skipping the rules that would use it")
            else:
                mine = preflight.deployer_cidr(self.clients)
        public = mine if s.public_access == "me" else chosen
        ssh = (explicit or mine) if s.key_name else None
        notes.append(f"port {s.app_port} is open to the load balancer"
                     + (f" and to {public}" if public else " only"))
        if s.key_name:
            notes.append(f"SSH (22) with key {s.key_name} from {ssh}" if ssh
                         else "no SSH rule: your IP is unknown (pass --public-access CIDR)")
        else:
            notes.append("no SSH: pass --key-name to open port 22 to your IP only")
        return Decisions(self.account, image_id, placement, default_vpc, public, ssh, notes)

    def _survey(self) -> Survey:
        lbs = self.lb.find_load_balancers()
        return Survey(
            network=self.network.find(),
            instances=self.instances.find(),
            load_balancers=lbs,
            target_groups=self.lb.find_target_groups(),
            listeners=self.lb.listeners(lbs[0]["LoadBalancerArn"]) if lbs else [],
        )

    def _plan_lines(self, d: Decisions, survey: Survey) -> list[str]:
        s, net, lines = self.settings, survey.network, []

        def line(exists, what: str, detail: str = "") -> None:
            lines.append(f"{'keep  ' if exists else 'create'} {what}{detail}")

        if d.default_vpc:
            lines.append(f"use    default VPC {d.default_vpc[0]}")
        else:
            line(net.vpc, "VPC", f" {net.vpc['VpcId']}" if net.vpc else f" {s.vpc_cidr}")
            line(net.igw, "internet gateway + route table to it")
            for index, zone in enumerate(d.placement.zones):
                sn = net.subnets.get(self.network.subnet_name(index))
                line(sn, f"public subnet in {sn['AvailabilityZone'] if sn else zone}")
        groups = net.security_groups
        line(self.network.lb_sg_name in groups, f"security group {self.network.lb_sg_name}",
             f": tcp/{s.listener_port} from 0.0.0.0/0 and ::/0")
        app_rules = [f"tcp/{s.app_port} from the load balancer's group"]
        if d.public_cidr:
            app_rules.append(f"tcp/{s.app_port} from {d.public_cidr}")
        if d.ssh_cidr:
            app_rules.append(f"tcp/22 from {d.ssh_cidr}")
        line(self.network.app_sg_name in groups, f"security group {self.network.app_sg_name}",
             ": " + ", ".join(app_rules))
        line(survey.target_groups, f"target group {s.tg_name}",
             f": HTTP {s.app_port}, health check GET {s.health_check_path} every "
             f"{s.health_check_interval}s, healthy after {s.healthy_threshold}")
        line(survey.load_balancers, f"load balancer {s.lb_name}",
             ": internet-facing, in both subnets")
        has_listener = any(li["Port"] == s.listener_port for li in survey.listeners)
        line(has_listener, f"listener HTTP {s.listener_port}",
             f" -> target group (port {s.app_port})")
        existing = {}
        for instance in survey.instances:
            name = summary(instance)["name"]
            existing.setdefault(name, instance)
        for index, name in enumerate(self.instances.wanted_names()):
            zone = d.placement.zones[index % 2]
            if name in existing:
                lines.append(f"keep   instance {name} {existing[name]['InstanceId']}")
            else:
                lines.append(f"create instance {name}: {d.placement.instance_type}, "
                             f"Amazon Linux 2023, IMDSv2, public IP, {zone}")
        wanted = set(self.instances.wanted_names())
        seen: set[str] = set()
        for instance in survey.instances:
            name = summary(instance)["name"]
            if name not in wanted or name in seen:
                lines.append(f"delete instance {instance['InstanceId']} ({name}): surplus")
            seen.add(name)
        return lines

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
