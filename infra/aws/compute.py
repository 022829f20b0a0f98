"""The stack's EC2 instances: launch (IMDSv2, a public IP asked for at launch, standard CPU
credits, spread over two AZs) and termination. Instances are named <stack>-app-1..N and found
again by their tags. The AMI and the type come from the preflight (preflight.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from infra.aws.waits import Waits
from infra.config import Settings, name_tag, stack_filters, stack_tags

# States in which an instance still counts as part of the stack.
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def launch_params(settings: Settings, name: str, instance_type: str, image_id: str, *,
                  burstable: bool) -> dict:
    """What RunInstances gets for every instance, less the network and user data: the
    preflight's dry run sends exactly this, so what it allows is what the launch sends."""
    tags = stack_tags(settings.stack, name)
    params = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        # IMDSv2 only: a token is required for every metadata request.
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                            "HttpPutResponseHopLimit": 1},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }
    if burstable:
        # T3 and T4g launch in "unlimited" mode by default, which bills surplus credits;
        # standard mode never bills beyond the hourly price.
        params["CreditSpecification"] = {"CpuCredits": "standard"}
    if settings.key_name:
        params["KeyName"] = settings.key_name
    return params


def _sorted_by_name(instances: list[dict]) -> list[dict]:
    return sorted(instances, key=lambda i: (name_tag(i) or "", i["InstanceId"]))


def summary(instance: dict) -> dict:
    """The state file's view of an instance."""
    return {
        "id": instance["InstanceId"],
        "public_ip": instance.get("PublicIpAddress"),
        "private_ip": instance.get("PrivateIpAddress"),
        "az": instance.get("Placement", {}).get("AvailabilityZone"),
        "state": instance.get("State", {}).get("Name"),
        "name": name_tag(instance),
        "type": instance.get("InstanceType"),
        "launch_time": iso(instance.get("LaunchTime")),
    }


def security_group_ids(instance: dict) -> list[str]:
    """The instance's security groups. AWS lists them on the instance and on its primary
    network interface; moto, for an instance launched with NetworkInterfaces (as deploy does),
    only on the interface."""
    groups = instance.get("SecurityGroups") or next(
        (eni.get("Groups") or [] for eni in instance.get("NetworkInterfaces") or []
         if (eni.get("Attachment") or {}).get("DeviceIndex") == 0), [])
    return [g["GroupId"] for g in groups]


def iso(moment) -> str | None:
    """A botocore datetime as ISO 8601 text, for the state file and status."""
    return moment.isoformat() if hasattr(moment, "isoformat") else moment


class Instances:
    def __init__(self, ec2, settings: Settings, progress: Callable[[str], None]):
        self.ec2 = ec2
        self.settings = settings
        self.progress = progress
        self.waits = Waits(ec2, settings, progress)

    def wanted_names(self) -> list[str]:
        return [self.settings.name(f"app-{i + 1}") for i in range(self.settings.instance_count)]

    def find(self, states: list[str] | None = None) -> list[dict]:
        filters = [*stack_filters(self.settings.stack),
                   {"Name": "instance-state-name", "Values": states or LIVE_STATES}]
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return _sorted_by_name(found)

    def describe(self, ids: list[str]) -> list[dict]:
        if not ids:
            return []
        reservations = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        found = [i for r in reservations for i in r["Instances"]]
        return _sorted_by_name(found)

    def ensure(self, subnets: list[tuple[str, str]], sg_id: str, instance_type: str,
               user_data: str, existing: list[dict] | None = None, *, image_id: str,
               burstable: bool = False) -> list[str]:
        """Launch the missing instances, start stopped ones, terminate surplus ones.

        Returns the ids of the stack's wanted instances (launched now or before). Instance i
        goes to subnet i mod 2, so the instances alternate between the two AZs.
        """
        existing = self.find() if existing is None else existing
        by_name: dict[str, dict] = {}
        surplus = []
        wanted = self.wanted_names()
        for instance in existing:
            name = name_tag(instance)
            if name in wanted and name not in by_name:
                by_name[name] = instance
            else:
                surplus.append(instance)
        if surplus:
            ids = [i["InstanceId"] for i in surplus]
            self.ec2.terminate_instances(InstanceIds=ids)
            self.progress(f"terminating surplus instances {', '.join(ids)}")
        stopped = [i["InstanceId"] for i in by_name.values()
                   if i["State"]["Name"] in ("stopping", "stopped")]
        if stopped:
            self.wait_stopped(stopped)
            self.ec2.start_instances(InstanceIds=stopped)
            self.progress(f"starting stopped instances {', '.join(stopped)}")
        for index, name in enumerate(wanted):
            if name in by_name:
                continue
            subnet_id, zone = subnets[index % len(subnets)]
            params = launch_params(self.settings, name, instance_type, image_id,
                                   burstable=burstable)
            by_name[name] = self._launch(params, name, subnet_id, sg_id, user_data)
            self.progress(f"launched {by_name[name]['InstanceId']} ({name}, {instance_type}, "
                          f"{zone})")
        return [by_name[name]["InstanceId"] for name in wanted]

    def _launch(self, params: dict, name: str, subnet_id: str, sg_id: str,
                user_data: str) -> dict:
        params = {
            **params,
            "UserData": user_data,
            # The public IP is asked for here, at launch: a subnet attribute changed moments
            # before may not be seen yet (EC2 is eventually consistent).
            "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [sg_id],
                                   "AssociatePublicIpAddress": True,
                                   "DeleteOnTermination": True}],
            # botocore's retries resend this same token, so a request whose response was
            # lost returns the instance it made instead of launching a second one.
            "ClientToken": f"{name}-{uuid.uuid4().hex}"[:64],
        }
        return self.ec2.run_instances(**params)["Instances"][0]

    def wait_running(self, ids: list[str]) -> None:
        # The waiter treats InvalidInstanceID.NotFound (AWS's eventual consistency right
        # after run_instances) as "not yet", so no describe call precedes it.
        self.waits.until("instance_running", f"instances {', '.join(ids)} running",
                         InstanceIds=ids)

    def wait_stopped(self, ids: list[str]) -> None:
        self.waits.until("instance_stopped", f"instances {', '.join(ids)} stopped",
                         InstanceIds=ids)

    def destroy(self) -> list[str]:
        """Terminate every tagged instance and wait until they are gone."""
        ids = [i["InstanceId"] for i in self.find(LIVE_STATES + ["shutting-down"])]
        if not ids:
            return []
        self.ec2.terminate_instances(InstanceIds=ids)
        self.progress(f"terminating instances {', '.join(ids)}")
        return ids

    def wait_terminated(self, ids: list[str]) -> None:
        # waits.STRICTER_WAITERS' InstanceTerminated: a stale pending or stopping just after
        # TerminateInstances is "not yet", not a failure.
        if ids:
            self.waits.until("instance_terminated", "instances terminated", InstanceIds=ids)
