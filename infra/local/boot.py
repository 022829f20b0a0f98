"""Would an instance's first boot install the app? What its subnet's routes decide.

On AWS the user data (infra/aws/templates/user_data.sh) downloads Python and the app's
packages at first boot (dnf, pip). An instance in a subnet with no route to the internet, no
0.0.0.0/0 to an internet gateway nor to a NAT gateway, cannot: the script fails, the app is
never installed, and no restart changes that. The testbed mirrors it: it does not start that
instance's app, and `local status` says why.
"""

from __future__ import annotations

from infra.aws import subnet_routes


def internet_route(table: dict | None) -> bool:
    """0.0.0.0/0 to an internet gateway, or to a NAT gateway (outbound only is enough)."""
    if subnet_routes.internet_route_problem(table) is None:
        return True
    return any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("NatGatewayId")
               and r.get("State", "active") != "blackhole"
               for r in (table or {}).get("Routes", []))


def boot_problem(ec2, instance: dict) -> str | None:
    """Why this instance's user data could not install the app, or None."""
    subnet_id, vpc_id = instance.get("SubnetId"), instance.get("VpcId")
    if not subnet_id or not vpc_id:
        return None  # EC2-Classic or a half-described instance: nothing to go on
    table = subnet_routes.route_table_for(ec2, subnet_id, vpc_id)
    if internet_route(table):
        return None
    problem = subnet_routes.internet_route_problem(table) or "no internet route"
    return (f"its subnet {subnet_id} has no route to the internet ({problem}, and no NAT "
            "gateway): the user data could not download Python and the app's packages at "
            "first boot, so the app was never installed. Launch it in a public subnet, or "
            "add a NAT gateway, and launch it again")


def boot_problems(ec2, instance_ids: list[str]) -> dict[str, str]:
    """instance id -> why its app cannot have been installed, for those that cannot."""
    if not instance_ids:
        return {}
    found = {}
    for reservation in ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]:
        for instance in reservation["Instances"]:
            problem = boot_problem(ec2, instance)
            if problem:
                found[instance["InstanceId"]] = problem
    return found
