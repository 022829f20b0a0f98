"""Fault drills: the seed FAQ's mistakes, made on a running testbed as a student makes them.

    python -m infra local break app-sg-closed     # revoke the rule, as in the console
    python -m infra local fix app-sg-closed       # and put it back
    python -m infra local break --list            # each fault with the FAQ entry it stands for
    python -m infra local faults                  # all of them, side by side (make test-faults)

`break` and `fix` go through boto3 to the testbed's moto server (app-crashed excepted: a
crash happens on the instance, not in the console), and the testbed answers as AWS would:
the supervisor applies the change to the data path and to DescribeTargetHealth.

`local faults` runs every fault, side by side on testbeds of their own (one stack, moto
server, Caddy and supervisor per lane, faults that share a lane one after the other), and
for each: break it, wait for the effect, grade (the autograder must FAIL, or PASS where an
ALB would still serve), run the doctor (it must name the fault by its finding code), fix it,
wait until the stack has recovered (the targets healthy again) and grade again (PASS).
The table at the end has one row per fault.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from infra.aws.compute import Instances, security_group_ids
from infra.aws.emulator import FAKE_CREDENTIALS
from infra.aws.loadbalancer import LoadBalancer
from infra.aws.network import ANYWHERE_V4, ANYWHERE_V6, Network, rules_of
from infra.config import PROJECT, TAG_PROJECT, TAG_STACK, stack_tags
from infra.errors import UserError
from infra.local import motoserver, proxy, supervisor
from infra.local.faultsrun import LANE_PREFIX, FaultsRun, run_root
from infra.local.machines import bootfault
from infra.local.processes import PROJECT_ROOT, wait_until
from infra.state import read_state, write_state

WRONG_HEALTH_CHECK_PATH = "/index.html"  # what a student often types; the app has no such page
WRONG_TG_PORT = 80  # the console's default target group port
SLACK = 10.0  # seconds on top of the health check window: a loaded 2-core machine
BOOT_SECONDS = 60.0  # a machine's boot, on top of that, where a fault boots machines


def _quiet(_message: str) -> None:
    pass


class Drill:
    """A running testbed, seen as a student sees the console: its resources by name."""

    def __init__(self, testbed, progress: Callable[[str], None] | None = None):
        self.bed = testbed
        self.say = progress or _quiet
        self.stack = testbed.stack
        self.settings = testbed.settings()
        self.clients = testbed.clients()
        self.ec2, self.elbv2 = self.clients.ec2, self.clients.elbv2
        self.network = Network(self.ec2, self.settings, _quiet)
        self.lbs = LoadBalancer(self.elbv2, self.settings, _quiet)
        self.compute = Instances(self.ec2, self.settings, _quiet)
        # The stack's own instances, by role: their ids do not change while a drill runs.
        self.ids = {role: i["InstanceId"] for role in ("app-1", "app-2")
                    if (i := self.instance(role)) is not None}

    # --- finding things ----------------------------------------------------------------
    def group(self, name: str) -> dict:
        groups = self.network.find().security_groups
        if name not in groups:
            raise UserError(f"the stack {self.stack} has no security group {name}")
        return groups[name]

    @property
    def app_sg(self) -> dict:
        return self.group(self.network.app_sg_name)

    @property
    def lb_sg(self) -> dict:
        return self.group(self.network.lb_sg_name)

    def lb(self) -> dict:
        found = self.lbs.find_load_balancers()
        if not found:
            raise UserError(f"the stack {self.stack} has no load balancer")
        return found[0]

    def target_group(self, name: str | None = None) -> dict | None:
        name = name or self.settings.tg_name
        return next((tg for tg in self.lbs.find_target_groups()
                     if tg["TargetGroupName"] == name), None)

    def listener_80(self) -> dict | None:
        port = self.settings.listener_port
        return next((ls for ls in self.lbs.listeners(self.lb()["LoadBalancerArn"])
                     if ls["Port"] == port), None)

    def instance(self, name: str) -> dict | None:
        return next((i for i in self.compute.find(["pending", "running", "stopping", "stopped"])
                     if _name(i) == self.settings.name(name)), None)

    @property
    def victim(self) -> dict:
        """The instance the one-instance faults happen to: app-2."""
        found = self.instance("app-2")
        if found is None:
            raise UserError(f"the stack {self.stack} has no instance {self.settings.name('app-2')}")
        return found

    def health(self, tg_arn: str | None = None) -> list[dict]:
        """DescribeTargetHealth of the group the listener forwards to (the supervisor's last
        look says which: one call, not a re-read of the stack, while waiting)."""
        tg_arn = tg_arn or self.status().get("target_group") or \
            self.bed.read_stack().target_group_arn
        if not tg_arn:
            return []
        return self.elbv2.describe_target_health(TargetGroupArn=tg_arn)[
            "TargetHealthDescriptions"]

    def status(self) -> dict:
        return supervisor.read_status(self.bed.runtime_dir)

    def tags(self, name: str) -> list[dict]:
        return [*stack_tags(self.stack), {"Key": "Name", "Value": name}]

    def refresh_state_file(self) -> None:
        """A load balancer made again has a new DNS name and ARN: keep the state file true."""
        state = read_state(self.bed.state_dir, self.stack)
        if state is None:
            return
        lb = self.lb()
        state.update(lb_dns=lb["DNSName"], lb_arn=lb["LoadBalancerArn"])
        write_state(self.bed.state_dir, self.stack, state)

    # --- what a fault's effect looks like ----------------------------------------------
    def targets_are(self, state: str, reason: str | None, *, ids: set[str] | None = None,
                    all_of_them: bool = True) -> bool:
        descs = [d for d in self.health() if ids is None or d["Target"]["Id"] in ids]
        hits = [d for d in descs if d["TargetHealth"]["State"] == state
                and d["TargetHealth"].get("Reason") == reason]
        return bool(descs) and (len(hits) == len(descs) if all_of_them else bool(hits))

    def front_is(self, state: str) -> bool:
        return self.status().get("front", {}).get("state") == state

    def recovered(self) -> str | None:
        """None when the stack is as deploy left it and serves; else what is still off."""
        status = self.status()
        if status.get("front", {}).get("state") != "serve":
            return f"the front is {status.get('front', {}).get('state')}"
        if status.get("fail_open"):
            return "the load balancer still fails open"
        wanted = set(self.ids.values())
        descs = self.health()
        states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in descs}
        if set(states) != wanted or set(states.values()) != {"healthy"}:
            return f"targets {states}, wanted {sorted(wanted)} healthy"
        apps = status.get("apps", {})
        down = [i for i in wanted if apps.get(i, {}).get("app") != "running"]
        if down:
            return f"apps not running: {down}"
        # Caddy's own checks run a second after the supervisor's: its rotation follows.
        meta = self.bed.meta
        caddy = proxy.Caddy(meta.admin, self.bed.runtime_dir).health(status.get("upstreams", []))
        out = sorted(a for a, state in caddy.items() if state != "healthy")
        return f"Caddy has not put back {out}" if out else None


def _name(instance: dict) -> str:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == "Name"), "")


def _ignore(code: str, call, **kwargs) -> None:
    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != code:
            raise


def _tcp(port: int, **sources) -> dict:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **sources}


# --- the faults -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    name: str
    faq: str  # the seed's FAQ entry (or step) it stands for
    does: str  # what `break` does, in the console's words
    code: str  # the doctor's finding code that names it
    apply: Callable[[Drill], None]
    undo: Callable[[Drill], None]  # puts back what apply changed, and nothing else
    effect: Callable[[Drill], bool]  # the effect is there (control plane and data path)
    broken: Callable[[Drill], bool]  # what apply changes is changed: `fix` has work to do
    grade: str = "FAIL"  # what the autograder says while it is broken
    seconds: float = 30.0  # its time in `local faults` (measured, loaded 2 cores): for lanes
    why_grade: str = ""
    booted: bool = False  # needs booted instances (infra/local/machines): a lane of its own


def _app_rule(d: Drill) -> dict:
    return _tcp(d.settings.app_port, UserIdGroupPairs=[{"GroupId": d.lb_sg["GroupId"]}])


def _lb_rules(d: Drill) -> list[dict]:
    port = d.settings.listener_port
    return [_tcp(port, IpRanges=[{"CidrIp": ANYWHERE_V4}]),
            _tcp(port, Ipv6Ranges=[{"CidrIpv6": ANYWHERE_V6}])]


def _authorize(d: Drill, group: dict, rules: list[dict]) -> None:
    """Put rules back in a group, each on its own: one still there is left as it is."""
    for rule in rules:
        _ignore("InvalidPermission.Duplicate", d.ec2.authorize_security_group_ingress,
                GroupId=group["GroupId"], IpPermissions=[rule])


def _app_sg_closed(d: Drill) -> None:
    _ignore("InvalidPermission.NotFound", d.ec2.revoke_security_group_ingress,
            GroupId=d.app_sg["GroupId"], IpPermissions=[_app_rule(d)])


def _app_sg_open(d: Drill) -> None:
    _authorize(d, d.app_sg, [_app_rule(d)])


def _app_sg_is_closed(d: Drill) -> bool:
    return (d.settings.app_port, "sg", d.lb_sg["GroupId"]) not in rules_of(d.app_sg)


def _lb_sg_no_80(d: Drill) -> None:
    for rule in _lb_rules(d):
        _ignore("InvalidPermission.NotFound", d.ec2.revoke_security_group_ingress,
                GroupId=d.lb_sg["GroupId"], IpPermissions=[rule])


def _lb_sg_80_back(d: Drill) -> None:
    _authorize(d, d.lb_sg, _lb_rules(d))


def _lb_sg_has_no_80(d: Drill) -> bool:
    port = d.settings.listener_port
    return not {(port, "cidr", ANYWHERE_V4), (port, "cidr6", ANYWHERE_V6)} <= rules_of(d.lb_sg)


def _default_sg(d: Drill) -> dict:
    groups = d.ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [d.lb_sg["VpcId"]]},
        {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    if not groups:
        raise UserError("the stack's VPC has no default security group")
    return groups[0]


def _default_sg_on_lb(d: Drill) -> None:
    d.elbv2.set_security_groups(LoadBalancerArn=d.lb()["LoadBalancerArn"],
                                SecurityGroups=[_default_sg(d)["GroupId"]])


def _lb_sg_not_its_own(d: Drill) -> bool:
    return d.lb().get("SecurityGroups") != [d.lb_sg["GroupId"]]


def _lb_sg_back(d: Drill) -> None:
    d.elbv2.set_security_groups(LoadBalancerArn=d.lb()["LoadBalancerArn"],
                                SecurityGroups=[d.lb_sg["GroupId"]])


def _wrong_tg_name(d: Drill) -> str:
    return f"{d.settings.tg_name}-{WRONG_TG_PORT}"


def _tg_wrong_port(d: Drill) -> None:
    """A target group made with the console's default port 80, the instances registered on
    it, and the listener forwarding to it."""
    right = d.target_group()
    wrong = d.target_group(_wrong_tg_name(d))
    if wrong is None:
        wrong = d.elbv2.create_target_group(
            Name=_wrong_tg_name(d), Protocol="HTTP", Port=WRONG_TG_PORT, VpcId=right["VpcId"],
            TargetType="instance", Tags=d.tags(_wrong_tg_name(d)), **d.lbs.health_check(),
        )["TargetGroups"][0]
    ids = list(d.ids.values())
    d.elbv2.register_targets(TargetGroupArn=wrong["TargetGroupArn"],
                             Targets=[{"Id": i} for i in ids])  # the group's port: 80
    d.elbv2.modify_listener(ListenerArn=d.listener_80()["ListenerArn"], DefaultActions=[
        {"Type": "forward", "TargetGroupArn": wrong["TargetGroupArn"]}])


def _tg_port_wrong(d: Drill) -> bool:
    listener = d.listener_80()
    forwards = [a.get("TargetGroupArn") for a in (listener or {}).get("DefaultActions", [])]
    return d.target_group(_wrong_tg_name(d)) is not None or (
        listener is not None and d.target_group()["TargetGroupArn"] not in forwards)


def _tg_right_port(d: Drill) -> None:
    d.lbs.ensure_listener(d.lb()["LoadBalancerArn"], d.target_group()["TargetGroupArn"])
    wrong = d.target_group(_wrong_tg_name(d))
    if wrong is not None:
        d.elbv2.delete_target_group(TargetGroupArn=wrong["TargetGroupArn"])


def _health_check_path(path: str) -> Callable[[Drill], None]:
    def modify(d: Drill) -> None:
        d.elbv2.modify_target_group(TargetGroupArn=d.target_group()["TargetGroupArn"],
                                    HealthCheckPath=path)
    return modify


def _health_check_path_changed(d: Drill) -> bool:
    return d.target_group()["HealthCheckPath"] != d.settings.health_check_path


def _recreate_lb(d: Drill, scheme: str) -> None:
    """The scheme cannot be changed: delete the load balancer and create it again, with the
    same name, subnets, security group and listener."""
    old = d.lb()
    if old.get("Scheme") == scheme:
        return
    subnets = [z["SubnetId"] for z in old.get("AvailabilityZones", [])]
    d.elbv2.delete_load_balancer(LoadBalancerArn=old["LoadBalancerArn"])
    d.elbv2.get_waiter("load_balancers_deleted").wait(
        LoadBalancerArns=[old["LoadBalancerArn"]], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    if scheme == "internet-facing":
        lb = d.lbs.ensure_load_balancer(subnets, d.lb_sg["GroupId"], found=[])
    else:
        lb = d.elbv2.create_load_balancer(
            Name=d.settings.lb_name, Subnets=subnets, SecurityGroups=[d.lb_sg["GroupId"]],
            Scheme=scheme, Type="application", IpAddressType="ipv4",
            Tags=d.tags(d.settings.lb_name))["LoadBalancers"][0]
    d.lbs.ensure_listener(lb["LoadBalancerArn"], d.target_group()["TargetGroupArn"], found=[])
    d.refresh_state_file()


def _no_listener(d: Drill) -> None:
    listener = d.listener_80()
    if listener is not None:
        d.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])


def _no_listener_80(d: Drill) -> bool:
    return d.listener_80() is None


def _listener_back(d: Drill) -> None:
    d.lbs.ensure_listener(d.lb()["LoadBalancerArn"], d.target_group()["TargetGroupArn"])


def _stop_instance(d: Drill) -> None:
    iid = d.victim["InstanceId"]
    d.ec2.stop_instances(InstanceIds=[iid])
    d.ec2.get_waiter("instance_stopped").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def _victim_not_running(d: Drill) -> bool:
    return d.victim["State"]["Name"] != "running"


def _start_instance(d: Drill) -> None:
    iid = d.victim["InstanceId"]
    d.ec2.start_instances(InstanceIds=[iid])
    d.ec2.get_waiter("instance_running").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def _crash_app(d: Drill) -> None:
    iid = d.victim["InstanceId"]
    if d.status().get("apps", {}).get(iid, {}).get("app") == "running":
        d.bed.kill_instance(iid)


def _app_down(d: Drill) -> bool:
    from infra.local.processes import is_ours
    from infra.local.testbed import app_process_name

    record = d.bed.processes.record(app_process_name(d.victim["InstanceId"]))
    return record is None or not is_ours(record)


def _restart_app(d: Drill) -> None:
    iid = d.victim["InstanceId"]
    with contextlib.suppress(UserError):  # already running: nothing to undo
        d.bed.start_instance(iid)


PRIVATE = "app-private"


def _private_subnet_cidr(d: Drill, vpc: dict) -> str:
    taken = [ipaddress.ip_network(s["CidrBlock"]) for s in d.ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]]
    for candidate in ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise UserError(f"no free /24 left in {vpc['VpcId']} for a private subnet")


def _launch_private(d: Drill) -> None:
    """An instance launched into a subnet without a route to the internet, registered in
    place of app-2: its user data cannot install the app."""
    victim = d.victim
    if d.instance(PRIVATE) is None:
        vpc = d.ec2.describe_vpcs(VpcIds=[victim["VpcId"]])["Vpcs"][0]
        subnet = d.ec2.create_subnet(
            VpcId=vpc["VpcId"], CidrBlock=_private_subnet_cidr(d, vpc),
            AvailabilityZone=victim["Placement"]["AvailabilityZone"],
            TagSpecifications=[{"ResourceType": "subnet",
                                "Tags": d.tags(d.settings.name("private"))}])["Subnet"]
        # No route table association: the VPC's main table, which only routes inside the VPC.
        launched = d.ec2.run_instances(
            ImageId=victim["ImageId"], InstanceType=victim["InstanceType"], MinCount=1,
            MaxCount=1, SubnetId=subnet["SubnetId"],
            SecurityGroupIds=security_group_ids(victim),
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": d.tags(d.settings.name(PRIVATE))}],
        )["Instances"][0]
        d.ec2.get_waiter("instance_running").wait(
            InstanceIds=[launched["InstanceId"]], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    private = d.instance(PRIVATE)
    tg = d.target_group()["TargetGroupArn"]
    d.elbv2.register_targets(TargetGroupArn=tg, Targets=[
        {"Id": private["InstanceId"], "Port": d.settings.app_port}])
    _ignore("InvalidTarget", d.elbv2.deregister_targets, TargetGroupArn=tg,
            Targets=[{"Id": victim["InstanceId"]}])


def _remove_private(d: Drill) -> None:
    tg = d.target_group()["TargetGroupArn"]
    d.elbv2.register_targets(TargetGroupArn=tg, Targets=[
        {"Id": d.victim["InstanceId"], "Port": d.settings.app_port}])
    private = d.instance(PRIVATE)
    if private is not None:
        _ignore("InvalidTarget", d.elbv2.deregister_targets, TargetGroupArn=tg,
                Targets=[{"Id": private["InstanceId"]}])
        d.ec2.terminate_instances(InstanceIds=[private["InstanceId"]])
        d.ec2.get_waiter("instance_terminated").wait(
            InstanceIds=[private["InstanceId"]], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    for subnet in d.ec2.describe_subnets(Filters=[
            {"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]},
            {"Name": f"tag:{TAG_STACK}", "Values": [d.stack]},
            {"Name": "tag:Name", "Values": [d.settings.name("private")]}])["Subnets"]:
        _ignore("InvalidSubnetID.NotFound", d.ec2.delete_subnet, SubnetId=subnet["SubnetId"])


def _private_launched(d: Drill) -> bool:
    return d.instance(PRIVATE) is not None


def _private_effect(d: Drill) -> bool:
    private = d.instance(PRIVATE)
    if private is None:
        return False
    iid = private["InstanceId"]
    apps = d.status().get("apps", {})
    return (apps.get(iid, {}).get("app") == "not started"
            and d.targets_are("unhealthy", "Target.FailedHealthChecks", ids={iid}))


def _victim_id(d: Drill) -> set[str]:
    return {d.ids["app-2"]}


FAULTS: dict[str, Fault] = {f.name: f for f in [
    Fault("app-sg-closed",
          "FAQ 6 (502, no traffic goes to the EC2 instances: the security groups); seed "
          "step 2 (inbound TCP 5000)",
          "revoke the app security group's rule TCP 5000 from the load balancer's group",
          "INSTANCE_SG_BLOCKS_LB", _app_sg_closed, _app_sg_open,
          lambda d: d.targets_are("unhealthy", "Target.Timeout")
          and d.status().get("fail_open") is True, _app_sg_is_closed, seconds=40),
    Fault("lb-sg-no-80",
          "FAQ 5 (connection timeout); load balancing step 3 (allow HTTP from anywhere)",
          "revoke the load balancer security group's HTTP 80 from 0.0.0.0/0 and ::/0",
          "LB_SG_NO_HTTP", _lb_sg_no_80, _lb_sg_80_back, lambda d: d.front_is("drop"),
          _lb_sg_has_no_80, seconds=15),
    Fault("default-sg-on-lb",
          "load balancing step 3 (do not use the default security group); FAQ 5",
          "give the load balancer the VPC's default security group instead of its own",
          "DEFAULT_SG_ON_LB", _default_sg_on_lb, _lb_sg_back, lambda d: d.front_is("drop"),
          _lb_sg_not_its_own, seconds=28),
    Fault("tg-wrong-port",
          "load balancing step 2 (map the web server port correctly); FAQ 6 (502)",
          f"make a target group on port {WRONG_TG_PORT} (the console's default), register the "
          "instances there and forward the listener to it",
          "TG_PORT_MISMATCH", _tg_wrong_port, _tg_right_port,
          lambda d: d.targets_are("unhealthy", "Target.Timeout"), _tg_port_wrong, seconds=32),
    Fault("health-check-path",
          "FAQ 4 (instances OutOfService); load balancing step 4 (targets must be healthy)",
          f"set the target group's health check path to {WRONG_HEALTH_CHECK_PATH}, a page the "
          "app does not have",
          "HEALTH_CHECK_NOT_200", _health_check_path(WRONG_HEALTH_CHECK_PATH),
          lambda d: _health_check_path(d.settings.health_check_path)(d),
          lambda d: d.targets_are("unhealthy", "Target.ResponseCodeMismatch")
          and d.status().get("fail_open") is True,
          _health_check_path_changed, grade="PASS", seconds=40,
          why_grade="every target is unhealthy, so the ALB fails open and serves GET / anyway"),
    Fault("internal-scheme",
          "FAQ 5 (connection timeout); load balancing step 3 (reachable from the internet)",
          "create the load balancer again with Scheme internal (it cannot be changed in place)",
          "LB_INTERNAL", lambda d: _recreate_lb(d, "internal"),
          lambda d: _recreate_lb(d, "internet-facing"), lambda d: d.front_is("drop"),
          lambda d: d.lb().get("Scheme") == "internal", seconds=27),
    Fault("no-listener",
          "FAQ 3 (failed to connect to the load balancer); load balancing step 2 (listener)",
          "delete the load balancer's HTTP 80 listener",
          "LISTENER_MISSING", _no_listener, _listener_back, lambda d: d.front_is("refuse"),
          _no_listener_80, seconds=24),
    Fault("instance-stopped",
          "FAQ 4 (instances OutOfService)",
          "stop instance app-2 (EC2 > Instances > Stop)",
          "INSTANCE_NOT_RUNNING", _stop_instance, _start_instance,
          lambda d: d.targets_are("unused", "Target.InvalidState", ids=_victim_id(d))
          and d.status().get("apps", {}).get(d.ids["app-2"], {}).get("app") == "stopped",
          _victim_not_running, seconds=33),
    Fault("app-crashed",
          "FAQ 4 (ssh in and run the app); FAQ 1 (flask run --host 0.0.0.0)",
          "kill app-2's app process (on the instance, not through boto3)",
          "TARGET_FAILED_HEALTH_CHECKS", _crash_app, _restart_app,
          lambda d: d.targets_are("unhealthy", "Target.FailedHealthChecks", ids=_victim_id(d))
          and d.targets_are("healthy", None, ids={d.ids["app-1"]}),
          _app_down, seconds=38),
    Fault("private-subnet",
          "seed step 3 (the instance must install the app's requirements); FAQ 4",
          "launch an instance into a new subnet with no route to the internet and register "
          "it in place of app-2",
          "INSTANCE_SUBNET_NO_IGW_ROUTE", _launch_private, _remove_private, _private_effect,
          _private_launched, seconds=32),
    Fault("boot-script-fails",
          "seed step 3 (install the app's requirements); FAQ 4 (instances OutOfService)",
          "redeploy both instances with user data whose requirements pin flask==31.3, a "
          "version that does not exist (booted testbed only)",
          "BOOT_SCRIPT_FAILED", bootfault.break_boot, bootfault.fix_boot,
          bootfault.boot_failed, bootfault.boot_broken, seconds=60, booted=True),
]}


def get(name: str) -> Fault:
    if name not in FAULTS:
        raise UserError(f"no fault {name!r}; `make local-break FAULT=--list` lists them: "
                        f"{', '.join(FAULTS)}")
    return FAULTS[name]


def listing() -> str:
    width = max(len(n) for n in FAULTS)
    lines = []
    for f in FAULTS.values():
        lines.append(f"  {f.name:<{width}}  {f.does}")
        lines.append(f"  {'':<{width}}  stands for: {f.faq}")
        grade = f"grade {f.grade}" + (f" ({f.why_grade})" if f.why_grade else "")
        lines.append(f"  {'':<{width}}  doctor: {f.code}; {grade}")
    return "\n".join(lines)


def effect_window(testbed) -> float:
    """How long a fault may take to show: the health check window, a poll, and slack."""
    view = testbed.read_stack()
    hc = view.health
    # A booted testbed's faults may boot machines first (infra/local/machines).
    boot = BOOT_SECONDS if getattr(testbed.meta, "backend", "") == "machines" else 0.0
    if hc is None:
        return 20.0 + SLACK + boot
    return hc.interval * max(hc.healthy, hc.unhealthy) + hc.timeout + \
        supervisor.POLL_SECONDS + SLACK + boot


# --- one fault, end to end -------------------------------------------------------------------
@dataclass
class Row:
    fault: str
    passed: bool = False
    effect_s: float | None = None  # break -> the effect in the control plane and data path
    grade_broken: str = ""
    doctor_codes: list[str] = field(default_factory=list)
    check_s: float | None = None  # grade and doctor while broken, side by side
    recovered_s: float | None = None  # fix -> recovered
    grade_fixed: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def doctor_codes(testbed) -> list[str]:
    """`python -m infra doctor --stack S --json` against the testbed's moto: the codes of its
    error and warning findings. A process of its own, as a user runs it."""
    return _doctor_result(_start_doctor(testbed))


def _start_doctor(testbed) -> subprocess.Popen:
    meta = testbed.meta
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS, AWS_ENDPOINT_URL=meta.endpoint, AWS_REGION=meta.region,
               AWS_DEFAULT_REGION=meta.region)
    return subprocess.Popen(
        [sys.executable, "-m", "infra", "doctor", "--stack", testbed.stack, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)


def _doctor_result(proc: subprocess.Popen) -> list[str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise UserError("the doctor did not finish within 60 s") from None
    try:
        findings = json.loads(out)["findings"]
    except (ValueError, KeyError) as exc:
        raise UserError(f"the doctor gave no JSON (exit {proc.returncode}): "
                        f"{(err or out)[-400:]}") from exc
    return [f["code"] for f in findings if f["severity"] in ("error", "warning")]


def grade_once(testbed) -> str:
    from infra.grade.grader import grade

    report = grade(testbed.lb_address, list(testbed.instances.values()), timeout=3.0)
    return "PASS" if report.passed else "FAIL"


def run_fault(testbed, fault: Fault, say: Callable[[str], None]) -> Row:
    """Break, wait for the effect, grade and doctor (side by side), fix, wait, grade."""
    row = Row(fault.name)
    started = time.monotonic()
    drill = Drill(testbed, say)
    window = effect_window(testbed)

    def wait_for(check: Callable[[], object]) -> bool:
        def safe() -> bool:
            try:
                return bool(check())
            except (ClientError, UserError, KeyError, TypeError):
                return False  # a resource mid-change: look again
        return wait_until(safe, window, 0.5)

    say(f"{fault.name}: break: {fault.does}")
    broke_at = time.monotonic()
    fault.apply(drill)
    if wait_for(lambda: fault.effect(drill)):
        row.effect_s = time.monotonic() - broke_at
        say(f"{fault.name}: took effect after {row.effect_s:.1f}s")
    else:
        row.problems.append(f"no effect within {window:.0f}s")
    checked_at = time.monotonic()
    doctor = _start_doctor(testbed)  # a process of its own: it runs while the grader does
    row.grade_broken = grade_once(testbed)
    graded_s = time.monotonic() - checked_at
    row.doctor_codes = _doctor_result(doctor)
    row.check_s = time.monotonic() - checked_at
    if row.grade_broken != fault.grade:
        row.problems.append(f"graded {row.grade_broken} while broken, expected {fault.grade}")
    if fault.code not in row.doctor_codes:
        row.problems.append(f"the doctor did not name {fault.code} "
                            f"(it said {', '.join(row.doctor_codes) or 'nothing'})")
    say(f"{fault.name}: grade {row.grade_broken} ({graded_s:.1f}s), doctor "
        f"{', '.join(row.doctor_codes)} ({row.check_s:.1f}s); fix")
    fixed_at = time.monotonic()
    fault.undo(drill)
    if wait_for(lambda: drill.recovered() is None):
        row.recovered_s = time.monotonic() - fixed_at
    else:
        row.problems.append(f"not recovered within {window:.0f}s: {drill.recovered()}")
    row.grade_fixed = grade_once(testbed)
    if row.grade_fixed != "PASS":
        row.problems.append("graded FAIL after the fix")
    row.passed = not row.problems
    row.seconds = time.monotonic() - started
    say(f"{fault.name}: {'PASS' if row.passed else 'FAIL'} ({row.seconds:.1f}s)")
    return row


# --- every fault, side by side -----------------------------------------------------------------
def lanes(names: list[str], count: int) -> list[list[str]]:
    """Share the faults out over `count` lanes, longest first onto the least loaded lane."""
    count = max(1, min(count, len(names)))
    loads: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(count)]
    for name in sorted(names, key=lambda n: -FAULTS[n].seconds):
        load, members = min(loads, key=lambda lane: lane[0])
        loads.remove((load, members))
        loads.append((load + FAULTS[name].seconds, [*members, name]))
    return [members for _, members in loads if members]


@dataclass
class LaneSpec:
    stack: str
    faults: list[str]
    lb_port: int | None
    first_address: str
    runtime_dir: str | None = None
    region: str = "us-east-1"
    caddy: str | None = None
    endpoint: str | None = None  # the moto server the lanes share
    state_dir: str | None = None
    machines: bool = False  # the lane's instances are booted machines


def run_lane(spec: LaneSpec, say: Callable[[str], None],
             interrupts=None) -> tuple[float, list[Row]]:
    """Up, every fault of the lane in turn, down. Returns (up seconds, rows)."""
    from infra.local.processes import free_port
    from infra.local.testbed import Testbed

    # One worker per app: the drills need no more, and a lane starts quicker on 2 cores.
    bed = Testbed(spec.stack, lb_port=spec.lb_port or free_port(), runtime_dir=spec.runtime_dir,
                  first_address=spec.first_address, caddy=spec.caddy, region=spec.region,
                  progress=_quiet, mode="test", app_env={"APP_WORKERS": "1"},
                  endpoint=spec.endpoint, machines=spec.machines, interrupts=interrupts,
                  **({"state_dir": spec.state_dir} if spec.state_dir else {}))
    rows: list[Row] = []
    started = time.monotonic()
    try:
        bed.up()
        up_seconds = time.monotonic() - started
        say(f"up in {up_seconds:.1f}s: {', '.join(spec.faults)}")
        for name in spec.faults:
            try:
                rows.append(run_fault(bed, FAULTS[name], say))
            except (UserError, ClientError) as exc:
                rows.append(Row(name, problems=[f"stopped: {exc}"]))
    finally:
        bed.down()
    return up_seconds, rows


def lane_main(argv: list[str]) -> int:
    """`python -m infra.local.faults LANE_JSON`: one lane, for `local faults`."""
    from infra.local.interrupts import Interrupts, sigterm_as_interrupt

    spec = LaneSpec(**json.loads(argv[0]))
    say = lambda m: print(f"[{spec.stack}] {m}", flush=True)  # noqa: E731
    try:
        with sigterm_as_interrupt(Interrupts()) as interrupts:
            up_seconds, rows = run_lane(spec, say, interrupts)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print("RESULT " + json.dumps({"up": up_seconds, "rows": [asdict(r) for r in rows]}),
          flush=True)
    return 0


def _address_plus(address: str, step: int) -> str:
    return str(ipaddress.IPv4Address(address) + step)


def run_all(names: list[str], *, stack: str, lanes_wanted: int, lb_port: int | None,
            first_address: str | None, region: str, caddy: str | None,
            say: Callable[[str], None], root: str | Path | None = None,
            state_dir: str | None = None, stop_hint: str = "",
            interrupts=None) -> tuple[list[Row], dict]:
    """Every named fault, in parallel lanes: one subprocess and one testbed (its own stack,
    Caddy, supervisor and apps) each, all on one moto server, as one control plane.

    `root`: the runtime directory of it all (default .local/<stack>-faults). One run per
    root at a time (faultsrun.FaultsRun); `stop_hint` says how to stop the one running."""
    from infra.local.testbed import child_env

    rng = random.Random()  # noqa: S311 - a loopback address, not a secret
    base = first_address or f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.11"
    booted = [n for n in names if FAULTS[n].booted]
    if booted:
        from infra.local.machines.backend import why_not

        why = why_not()
        if why:
            say(f"{', '.join(booted)}: skipped: {why}")
            names = [n for n in names if n not in booted]
    run = FaultsRun(root or run_root(stack), stack, stop_hint, interrupts)
    with run.owned(say) as processes:
        say("control plane: one moto server for every lane")
        try:
            endpoint = motoserver.start(
                processes, child_env(**FAKE_CREDENTIALS),
                table=run.root / "lanes" / "*" / motoserver.HEALTH_TABLE)
            _warm(endpoint, region)
            return _run_lanes(names, stack, lanes_wanted, lb_port, base, region, caddy,
                              endpoint, run, state_dir, say)
        finally:
            record = processes.record(motoserver.NAME)
            if record is not None:
                say(f"the shared moto server used {_cpu_seconds(record.pid):.1f} s of CPU")


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _warm(endpoint: str, region: str) -> None:
    """moto builds each service's backend on its first call: once, before the lanes start."""
    from infra.aws.emulator import emulator_clients

    clients = emulator_clients(endpoint, region)
    clients.ec2.describe_availability_zones()
    clients.elbv2.describe_load_balancers()


def _run_lanes(names, stack, lanes_wanted, lb_port, base, region, caddy, endpoint,
               run: FaultsRun, state_dir, say) -> tuple[list[Row], dict]:
    booted = [n for n in names if FAULTS[n].booted]  # a lane of booted machines of their own
    plan = lanes([n for n in names if n not in booted], lanes_wanted) + \
        ([booted] if booted else [])
    specs = [LaneSpec(stack=f"{stack}-f{i + 1}", faults=lane,
                      machines=any(FAULTS[n].booted for n in lane),
                      lb_port=lb_port + i if lb_port else None,
                      first_address=_address_plus(base, 8 * i), region=region, caddy=caddy,
                      endpoint=endpoint,
                      runtime_dir=str(run.root / "lanes" / f"{stack}-f{i + 1}"),
                      state_dir=state_dir)
             for i, lane in enumerate(plan)]
    say(f"{len(names)} faults in {len(specs)} lanes: "
        + "; ".join(f"{s.stack}: {', '.join(s.faults)}" for s in specs))
    results: dict[str, dict] = {}
    errors: list[str] = []

    def handle(spec: LaneSpec, line: str) -> None:
        if line.startswith("RESULT "):
            results[spec.stack] = json.loads(line[len("RESULT "):])
        elif line.startswith('{"error"'):
            errors.append(f"{spec.stack}: {json.loads(line)['error']}")
        else:
            say(line)

    followers = []
    procs = []
    for spec in specs:
        # Each lane a process of the run's own, recorded as it starts; its output goes to
        # its log, followed from here, so that a lane outlives nothing it needs.
        name = f"{LANE_PREFIX}{spec.stack}"
        log = run.processes.log_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc, _record = run.processes.start(
            name, [sys.executable, "-m", "infra.local.faults", json.dumps(asdict(spec))])
        procs.append(proc)
        followers.append(threading.Thread(
            target=_follow, args=(log, offset, proc, lambda line, s=spec: handle(s, line)),
            daemon=True))
        followers[-1].start()
    for proc in procs:  # Ctrl-C: the run's owner (FaultsRun.owned) stops the lanes
        proc.wait()
    for follower in followers:
        follower.join(timeout=5)
    rows: list[Row] = []
    ups = {}
    for spec in specs:
        found = results.get(spec.stack)
        if found is None:
            problem = next((e for e in errors if e.startswith(spec.stack)), "the lane failed")
            rows += [Row(n, problems=[problem]) for n in spec.faults]
            continue
        ups[spec.stack] = found["up"]
        rows += [Row(**r) for r in found["rows"]]
    order = list(FAULTS)
    rows.sort(key=lambda r: order.index(r.fault))
    return rows, {"lanes": [asdict(s) for s in specs], "up_seconds": ups}


def _follow(log: Path, offset: int, proc: subprocess.Popen, handle: Callable[[str], None]
            ) -> None:
    """A lane's log lines after `offset` (past the header ProcessGroup writes), as they
    come, until the lane has ended and every line is read."""
    buffer, header = "", True
    with open(log, errors="replace") as stream:
        stream.seek(offset)
        while True:
            ended = proc.poll() is not None
            chunk = stream.read()
            if not chunk:
                if ended:
                    break
                time.sleep(0.1)
                continue
            *lines, buffer = (buffer + chunk).split("\n")
            for line in lines:
                if header:
                    header = False  # "--- 12:00:00 python -m infra.local.faults {...}"
                    continue
                handle(line)
    if buffer:
        handle(buffer)


def render(rows: list[Row], total: float) -> str:
    head = (f"{'fault':<18} {'result':<6} {'effect':>7} {'broken':<7} {'doctor names':<29} "
            f"{'fixed':>6} {'graded':<6} {'time':>6}")
    lines = ["", head, "-" * len(head)]
    for r in rows:
        effect = f"{r.effect_s:.1f}s" if r.effect_s is not None else "-"
        fixed = f"{r.recovered_s:.1f}s" if r.recovered_s is not None else "-"
        named = FAULTS[r.fault].code if FAULTS[r.fault].code in r.doctor_codes else "-"
        lines.append(f"{r.fault:<18} {'PASS' if r.passed else 'FAIL':<6} {effect:>7} "
                     f"{r.grade_broken or '-':<7} {named:<29} {fixed:>6} "
                     f"{r.grade_fixed or '-':<6} {r.seconds:5.1f}s")
        lines += [f"{'':<20}- {p}" for p in r.problems]
    passed = sum(r.passed for r in rows)
    lines += ["-" * len(head),
              f"{'PASS' if rows and passed == len(rows) else 'FAIL'}  {passed} of {len(rows)} "
              f"faults round-trip (make test-faults, {total:.1f}s)",
              "effect: break -> seen in DescribeTargetHealth and the data path; broken: the "
              "grade while broken; fixed: fix -> targets healthy again"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(lane_main(sys.argv[1:]))
