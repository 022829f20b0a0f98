"""The faults made to the instances: one stopped, one's app crashed, one in a private subnet.

(The boot script's own fault, on booted machines, is bootscript.py.)
"""

from __future__ import annotations

import contextlib
import ipaddress

from infra.aws.compute import security_group_ids
from infra.config import stack_filters
from infra.errors import UserError
from infra.local.faults.fault import Fault, ignoring, wait_for
from infra.local.faults.site import FaultSite

PRIVATE = "app-private"  # the role of the instance launched into a private subnet


class InstanceStopped(Fault):
    name = "instance-stopped"
    faq = "FAQ 4 (instances OutOfService)"
    does = "stop instance app-2 (EC2 > Instances > Stop)"
    code = "INSTANCE_NOT_RUNNING"
    seconds = 33

    @staticmethod
    def switch(site: FaultSite, action: str, waiter: str) -> None:
        """Stop or start the victim (EC2's `action`), and wait until EC2 says it is done."""
        iid = site.victim["InstanceId"]
        getattr(site.ec2, action)(InstanceIds=[iid])
        wait_for(site.ec2.get_waiter(waiter), InstanceIds=[iid])

    def apply(self, site: FaultSite) -> None:
        self.switch(site, "stop_instances", "instance_stopped")

    def undo(self, site: FaultSite) -> None:
        self.switch(site, "start_instances", "instance_running")

    def effect(self, site: FaultSite) -> bool:
        victim = site.ids["app-2"]
        return (site.targets_are("unused", "Target.InvalidState", ids={victim})
                and site.app_state(victim) == "stopped")

    def broken(self, site: FaultSite) -> bool:
        return site.victim["State"]["Name"] != "running"


class AppCrashed(Fault):
    name = "app-crashed"
    faq = "FAQ 4 (ssh in and run the app); FAQ 1 (flask run --host 0.0.0.0)"
    does = "kill app-2's app process (on the instance, not through boto3)"
    code = "TARGET_FAILED_HEALTH_CHECKS"
    seconds = 38

    def apply(self, site: FaultSite) -> None:
        iid = site.victim["InstanceId"]
        if site.app_state(iid) == "running":
            site.bed.kill_instance(iid)

    def undo(self, site: FaultSite) -> None:
        with contextlib.suppress(UserError):  # already running: nothing to undo
            site.bed.start_instance(site.victim["InstanceId"])

    def effect(self, site: FaultSite) -> bool:
        return (site.targets_are("unhealthy", "Target.FailedHealthChecks",
                                 ids={site.ids["app-2"]})
                and site.targets_are("healthy", None, ids={site.ids["app-1"]}))

    def broken(self, site: FaultSite) -> bool:
        return not site.bed.apps.running(site.victim["InstanceId"])


class PrivateSubnet(Fault):
    name = "private-subnet"
    faq = "seed step 3 (the instance must install the app's requirements); FAQ 4"
    does = ("launch an instance into a new subnet with no route to the internet and register "
            "it in place of app-2")
    code = "INSTANCE_SUBNET_NO_IGW_ROUTE"
    seconds = 32

    @staticmethod
    def free_cidr(site: FaultSite, vpc: dict) -> str:
        taken = [ipaddress.ip_network(s["CidrBlock"]) for s in site.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]]
        for candidate in ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=24):
            if not any(candidate.overlaps(t) for t in taken):
                return str(candidate)
        raise UserError(f"no free /24 left in {vpc['VpcId']} for a private subnet")

    def launch(self, site: FaultSite, victim: dict) -> None:
        vpc = site.ec2.describe_vpcs(VpcIds=[victim["VpcId"]])["Vpcs"][0]
        subnet = site.ec2.create_subnet(
            VpcId=vpc["VpcId"], CidrBlock=self.free_cidr(site, vpc),
            AvailabilityZone=victim["Placement"]["AvailabilityZone"],
            TagSpecifications=[{"ResourceType": "subnet",
                                "Tags": site.tags(site.settings.name("private"))}])["Subnet"]
        # No route table association: the VPC's main table, which only routes inside the VPC.
        launched = site.ec2.run_instances(
            ImageId=victim["ImageId"], InstanceType=victim["InstanceType"], MinCount=1,
            MaxCount=1, SubnetId=subnet["SubnetId"],
            SecurityGroupIds=security_group_ids(victim),
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": site.tags(site.settings.name(PRIVATE))}],
        )["Instances"][0]
        wait_for(site.ec2.get_waiter("instance_running"), InstanceIds=[launched["InstanceId"]])

    def apply(self, site: FaultSite) -> None:
        """An instance launched into a subnet without a route to the internet, registered in
        place of app-2: its user data cannot install the app."""
        victim = site.victim
        if site.instance(PRIVATE) is None:
            self.launch(site, victim)
        tg = site.target_group()["TargetGroupArn"]
        site.elbv2.register_targets(TargetGroupArn=tg, Targets=[
            {"Id": site.instance(PRIVATE)["InstanceId"], "Port": site.settings.app_port}])
        ignoring("InvalidTarget", site.elbv2.deregister_targets, TargetGroupArn=tg,
                 Targets=[{"Id": victim["InstanceId"]}])

    def undo(self, site: FaultSite) -> None:
        tg = site.target_group()["TargetGroupArn"]
        site.elbv2.register_targets(TargetGroupArn=tg, Targets=[
            {"Id": site.victim["InstanceId"], "Port": site.settings.app_port}])
        private = site.instance(PRIVATE)
        if private is not None:
            ignoring("InvalidTarget", site.elbv2.deregister_targets, TargetGroupArn=tg,
                     Targets=[{"Id": private["InstanceId"]}])
            site.ec2.terminate_instances(InstanceIds=[private["InstanceId"]])
            wait_for(site.ec2.get_waiter("instance_terminated"),
                     InstanceIds=[private["InstanceId"]])
        named = {"Name": "tag:Name", "Values": [site.settings.name("private")]}
        for subnet in site.ec2.describe_subnets(
                Filters=[*stack_filters(site.stack), named])["Subnets"]:
            ignoring("InvalidSubnetID.NotFound", site.ec2.delete_subnet,
                     SubnetId=subnet["SubnetId"])

    def effect(self, site: FaultSite) -> bool:
        private = site.instance(PRIVATE)
        if private is None:
            return False
        iid = private["InstanceId"]
        return (site.app_state(iid) == "not started"
                and site.targets_are("unhealthy", "Target.FailedHealthChecks", ids={iid}))

    def broken(self, site: FaultSite) -> bool:
        return site.instance(PRIVATE) is not None
