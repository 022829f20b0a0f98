"""The faults: the seed FAQ's mistakes, each a small class (fault.py), and their table.

Here those of the security groups and the load balancer; the instances' are in
instances.py and bootscript.py.

Each is made through boto3, as a student makes it in the console (app-crashed excepted: a
crash happens on the instance, not in the console); the testbed's supervisor then applies
the change to the data path and to DescribeTargetHealth, as AWS would.
"""

from __future__ import annotations

from infra.aws.security_groups import ANYWHERE_V4, ANYWHERE_V6, rules_of
from infra.errors import UserError
from infra.local.faults.bootscript import BootScriptFails
from infra.local.faults.fault import Fault, ignoring, tcp, wait_for
from infra.local.faults.instances import AppCrashed, InstanceStopped, PrivateSubnet
from infra.local.faults.site import FaultSite

WRONG_HEALTH_CHECK_PATH = "/index.html"  # what a student often types; the app has no such page
WRONG_TG_PORT = 80  # the console's default target group port


def authorize(site: FaultSite, group: dict, rules: list[dict]) -> None:
    """Put rules back in a group, each on its own: one still there is left as it is."""
    for rule in rules:
        ignoring("InvalidPermission.Duplicate", site.ec2.authorize_security_group_ingress,
                 GroupId=group["GroupId"], IpPermissions=[rule])


# --- security groups ---------------------------------------------------------------------------
class AppSgClosed(Fault):
    name = "app-sg-closed"
    faq = ("FAQ 6 (502, no traffic goes to the EC2 instances: the security groups); seed "
           "step 2 (inbound TCP 5000)")
    does = "revoke the app security group's rule TCP 5000 from the load balancer's group"
    code = "INSTANCE_SG_BLOCKS_LB"
    seconds = 40

    @staticmethod
    def rule(site: FaultSite) -> dict:
        return tcp(site.settings.app_port, UserIdGroupPairs=[{"GroupId": site.lb_sg["GroupId"]}])

    def apply(self, site: FaultSite) -> None:
        ignoring("InvalidPermission.NotFound", site.ec2.revoke_security_group_ingress,
                 GroupId=site.app_sg["GroupId"], IpPermissions=[self.rule(site)])

    def undo(self, site: FaultSite) -> None:
        authorize(site, site.app_sg, [self.rule(site)])

    def effect(self, site: FaultSite) -> bool:
        return site.targets_are("unhealthy", "Target.Timeout") and site.fails_open()

    def broken(self, site: FaultSite) -> bool:
        return (site.settings.app_port, "sg", site.lb_sg["GroupId"]) not in rules_of(site.app_sg)


class LbSgNo80(Fault):
    name = "lb-sg-no-80"
    faq = "FAQ 5 (connection timeout); load balancing step 3 (allow HTTP from anywhere)"
    does = "revoke the load balancer security group's HTTP 80 from 0.0.0.0/0 and ::/0"
    code = "LB_SG_NO_HTTP"
    seconds = 15

    @staticmethod
    def rules(site: FaultSite) -> list[dict]:
        port = site.settings.listener_port
        return [tcp(port, IpRanges=[{"CidrIp": ANYWHERE_V4}]),
                tcp(port, Ipv6Ranges=[{"CidrIpv6": ANYWHERE_V6}])]

    def apply(self, site: FaultSite) -> None:
        for rule in self.rules(site):
            ignoring("InvalidPermission.NotFound", site.ec2.revoke_security_group_ingress,
                     GroupId=site.lb_sg["GroupId"], IpPermissions=[rule])

    def undo(self, site: FaultSite) -> None:
        authorize(site, site.lb_sg, self.rules(site))

    def effect(self, site: FaultSite) -> bool:
        return site.front_is("drop")

    def broken(self, site: FaultSite) -> bool:
        port = site.settings.listener_port
        return not {(port, "cidr", ANYWHERE_V4), (port, "cidr6", ANYWHERE_V6)} <= \
            rules_of(site.lb_sg)


class DefaultSgOnLb(Fault):
    name = "default-sg-on-lb"
    faq = "load balancing step 3 (do not use the default security group); FAQ 5"
    does = "give the load balancer the VPC's default security group instead of its own"
    code = "DEFAULT_SG_ON_LB"
    seconds = 28

    @staticmethod
    def default_group(site: FaultSite) -> dict:
        groups = site.ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [site.lb_sg["VpcId"]]},
            {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        if not groups:
            raise UserError("the stack's VPC has no default security group")
        return groups[0]

    def apply(self, site: FaultSite) -> None:
        site.elbv2.set_security_groups(LoadBalancerArn=site.lb()["LoadBalancerArn"],
                                       SecurityGroups=[self.default_group(site)["GroupId"]])

    def undo(self, site: FaultSite) -> None:
        site.elbv2.set_security_groups(LoadBalancerArn=site.lb()["LoadBalancerArn"],
                                       SecurityGroups=[site.lb_sg["GroupId"]])

    def effect(self, site: FaultSite) -> bool:
        return site.front_is("drop")

    def broken(self, site: FaultSite) -> bool:
        return site.lb().get("SecurityGroups") != [site.lb_sg["GroupId"]]


# --- the load balancer -------------------------------------------------------------------------
class TgWrongPort(Fault):
    name = "tg-wrong-port"
    faq = "load balancing step 2 (map the web server port correctly); FAQ 6 (502)"
    does = (f"make a target group on port {WRONG_TG_PORT} (the console's default), register the "
            "instances there and forward the listener to it")
    code = "TG_PORT_MISMATCH"
    seconds = 32

    @staticmethod
    def wrong_name(site: FaultSite) -> str:
        return f"{site.settings.tg_name}-{WRONG_TG_PORT}"

    def apply(self, site: FaultSite) -> None:
        """A target group made with the console's default port 80, the instances registered
        on it, and the listener forwarding to it."""
        right, name = site.target_group(), self.wrong_name(site)
        wrong = site.target_group(name)
        if wrong is None:
            wrong = site.elbv2.create_target_group(
                Name=name, Protocol="HTTP", Port=WRONG_TG_PORT, VpcId=right["VpcId"],
                TargetType="instance", Tags=site.tags(name), **site.lbs.health_check(),
            )["TargetGroups"][0]
        site.elbv2.register_targets(TargetGroupArn=wrong["TargetGroupArn"],
                                    Targets=[{"Id": i} for i in site.ids.values()])  # port 80
        site.elbv2.modify_listener(ListenerArn=site.listener()["ListenerArn"], DefaultActions=[
            {"Type": "forward", "TargetGroupArn": wrong["TargetGroupArn"]}])

    def undo(self, site: FaultSite) -> None:
        site.lbs.ensure_listener(site.lb()["LoadBalancerArn"],
                                 site.target_group()["TargetGroupArn"])
        wrong = site.target_group(self.wrong_name(site))
        if wrong is not None:
            site.elbv2.delete_target_group(TargetGroupArn=wrong["TargetGroupArn"])

    def effect(self, site: FaultSite) -> bool:
        return site.targets_are("unhealthy", "Target.Timeout")

    def broken(self, site: FaultSite) -> bool:
        listener = site.listener()
        forwards = [a.get("TargetGroupArn") for a in (listener or {}).get("DefaultActions", [])]
        return site.target_group(self.wrong_name(site)) is not None or (
            listener is not None and site.target_group()["TargetGroupArn"] not in forwards)


class HealthCheckPath(Fault):
    name = "health-check-path"
    faq = "FAQ 4 (instances OutOfService); load balancing step 4 (targets must be healthy)"
    does = (f"set the target group's health check path to {WRONG_HEALTH_CHECK_PATH}, a page the "
            "app does not have")
    code = "HEALTH_CHECK_NOT_200"
    grade = "PASS"
    why_grade = "every target is unhealthy, so the ALB fails open and serves GET / anyway"
    seconds = 40

    @staticmethod
    def set_path(site: FaultSite, path: str) -> None:
        site.elbv2.modify_target_group(TargetGroupArn=site.target_group()["TargetGroupArn"],
                                       HealthCheckPath=path)

    def apply(self, site: FaultSite) -> None:
        self.set_path(site, WRONG_HEALTH_CHECK_PATH)

    def undo(self, site: FaultSite) -> None:
        self.set_path(site, site.settings.health_check_path)

    def effect(self, site: FaultSite) -> bool:
        return site.targets_are("unhealthy", "Target.ResponseCodeMismatch") and site.fails_open()

    def broken(self, site: FaultSite) -> bool:
        return site.target_group()["HealthCheckPath"] != site.settings.health_check_path


class InternalScheme(Fault):
    name = "internal-scheme"
    faq = "FAQ 5 (connection timeout); load balancing step 3 (reachable from the internet)"
    does = "create the load balancer again with Scheme internal (it cannot be changed in place)"
    code = "LB_INTERNAL"
    seconds = 27

    @staticmethod
    def recreate(site: FaultSite, scheme: str) -> None:
        """The scheme cannot be changed: delete the load balancer and create it again, with
        the same name, subnets, security group and listener."""
        old = site.lb()
        if old.get("Scheme") == scheme:
            return
        subnets = [z["SubnetId"] for z in old.get("AvailabilityZones", [])]
        site.elbv2.delete_load_balancer(LoadBalancerArn=old["LoadBalancerArn"])
        wait_for(site.elbv2.get_waiter("load_balancers_deleted"), attempts=50,
                 LoadBalancerArns=[old["LoadBalancerArn"]])
        if scheme == "internet-facing":
            lb = site.lbs.ensure_load_balancer(subnets, site.lb_sg["GroupId"], found=[])
        else:
            lb = site.elbv2.create_load_balancer(
                Name=site.settings.lb_name, Subnets=subnets, SecurityGroups=[site.lb_sg["GroupId"]],
                Scheme=scheme, Type="application", IpAddressType="ipv4",
                Tags=site.tags(site.settings.lb_name))["LoadBalancers"][0]
        site.lbs.ensure_listener(lb["LoadBalancerArn"], site.target_group()["TargetGroupArn"],
                                 found=[])
        site.refresh_state_file()

    def apply(self, site: FaultSite) -> None:
        self.recreate(site, "internal")

    def undo(self, site: FaultSite) -> None:
        self.recreate(site, "internet-facing")

    def effect(self, site: FaultSite) -> bool:
        return site.front_is("drop")

    def broken(self, site: FaultSite) -> bool:
        return site.lb().get("Scheme") == "internal"


class NoListener(Fault):
    name = "no-listener"
    faq = "FAQ 3 (failed to connect to the load balancer); load balancing step 2 (listener)"
    does = "delete the load balancer's HTTP 80 listener"
    code = "LISTENER_MISSING"
    seconds = 24

    def apply(self, site: FaultSite) -> None:
        listener = site.listener()
        if listener is not None:
            site.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])

    def undo(self, site: FaultSite) -> None:
        site.lbs.ensure_listener(site.lb()["LoadBalancerArn"],
                                 site.target_group()["TargetGroupArn"])

    def effect(self, site: FaultSite) -> bool:
        return site.front_is("refuse")

    def broken(self, site: FaultSite) -> bool:
        return site.listener() is None


# --- the table -----------------------------------------------------------------------------------
FAULTS: dict[str, Fault] = {fault.name: fault for fault in (
    AppSgClosed(), LbSgNo80(), DefaultSgOnLb(), TgWrongPort(), HealthCheckPath(),
    InternalScheme(), NoListener(), InstanceStopped(), AppCrashed(), PrivateSubnet(),
    BootScriptFails(),
)}


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
