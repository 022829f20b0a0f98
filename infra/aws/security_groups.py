"""The stack's two security groups: the load balancer's (HTTP from anywhere) and the
instances' (the app port from the load balancer's group; optionally from the user and SSH).
Found again by their tags; their rules are converged to exactly the wanted ones.

A rule here is (port, kind, source), TCP only: kind "cidr", "cidr6" or "sg". Deploy never
makes another kind, and leaves a hand-made one alone. (The doctor reads any rule with
sg_rules.py, which knows protocols and port ranges.)
"""

from __future__ import annotations

from collections.abc import Callable

from infra.aws.waits import Waits, delete_once_released
from infra.config import Settings, stack_filters, stack_tags

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"

Rule = tuple[int, str, str]


def find_groups(ec2, stack: str) -> dict[str, dict]:
    """The stack's security groups, by name."""
    groups = ec2.describe_security_groups(Filters=stack_filters(stack))["SecurityGroups"]
    return {group["GroupName"]: group for group in groups}


class SecurityGroups:
    def __init__(self, ec2, settings: Settings, progress: Callable[[str], None]):
        self.ec2 = ec2
        self.settings = settings
        self.progress = progress
        self.waits = Waits(ec2, settings, progress)

    @property
    def lb_sg_name(self) -> str:
        return self.settings.name("lb-sg")

    @property
    def app_sg_name(self) -> str:
        return self.settings.name("app-sg")

    def find(self) -> dict[str, dict]:
        return find_groups(self.ec2, self.settings.stack)

    # --- converging ---------------------------------------------------------------------

    def ensure(self, vpc_id: str, public_cidr: str | None, ssh_cidr: str | None,
               found: dict[str, dict] | None = None) -> tuple[str, str]:
        """The load balancer's group and the instances' group, with exactly the wanted rules.
        `found`: the stack's groups by name, when the caller has just listed them."""
        groups = self.find() if found is None else found
        in_vpc = {name: g for name, g in groups.items() if g["VpcId"] == vpc_id}
        lb_sg = self._ensure_group(in_vpc.get(self.lb_sg_name), self.lb_sg_name, vpc_id,
                                   "seed-lb load balancer: HTTP from anywhere")
        app_sg = self._ensure_group(in_vpc.get(self.app_sg_name), self.app_sg_name, vpc_id,
                                    "seed-lb instances: app port from the load balancer")
        created = [g["GroupId"] for g in (lb_sg, app_sg) if g.get("created")]
        if created:
            # Seen by EC2's describe before a rule names them.
            self.waits.created("security_group_exists",
                               f"security groups {', '.join(created)}", GroupIds=created)
        self._converge_rules(lb_sg, self.lb_rules())
        self._converge_rules(app_sg, self.app_rules(lb_sg["GroupId"], public_cidr, ssh_cidr))
        return lb_sg["GroupId"], app_sg["GroupId"]

    def lb_rules(self) -> set[Rule]:
        port = self.settings.listener_port
        return {(port, "cidr", ANYWHERE_V4), (port, "cidr6", ANYWHERE_V6)}

    def app_rules(self, lb_sg_id: str, public_cidr: str | None, ssh_cidr: str | None) \
            -> set[Rule]:
        port = self.settings.app_port
        rules: set[Rule] = {(port, "sg", lb_sg_id)}
        if public_cidr:
            rules.add((port, "cidr6" if ":" in public_cidr else "cidr", public_cidr))
        if ssh_cidr and self.settings.key_name:
            rules.add((22, "cidr6" if ":" in ssh_cidr else "cidr", ssh_cidr))
        return rules

    def _ensure_group(self, group: dict | None, name: str, vpc_id: str, description: str) \
            -> dict:
        if group is not None:
            return group
        tags = stack_tags(self.settings.stack, name)
        group_id = self.ec2.create_security_group(
            GroupName=name, Description=description, VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        )["GroupId"]
        self.progress(f"created security group {group_id} ({name})")
        return {"GroupId": group_id, "GroupName": name, "VpcId": vpc_id, "IpPermissions": [],
                "created": True}

    def _converge_rules(self, group: dict, wanted: set[Rule]) -> None:
        have = rules_of(group)
        missing, extra = wanted - have, have - wanted
        if missing:
            self.ec2.authorize_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=[_permission(r) for r in sorted(missing)]
            )
        if extra:
            self.ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=[_permission(r) for r in sorted(extra)]
            )
        for port, _kind, source in sorted(missing):
            self.progress(f"{group['GroupName']}: allow tcp/{port} from {source}")
        for port, _kind, source in sorted(extra):
            self.progress(f"{group['GroupName']}: removed tcp/{port} from {source}")

    # --- tearing down -------------------------------------------------------------------

    def destroy(self, delay: float, budget: float) -> list[str]:
        """Delete every tagged group. Returns what went."""
        groups = list(self.find().values())
        # Drop group-to-group references first, so the groups can go in any order.
        for group in groups:
            refs = [p for p in group.get("IpPermissions") or [] if p.get("UserIdGroupPairs")]
            if refs:
                self.ec2.revoke_security_group_ingress(
                    GroupId=group["GroupId"],
                    IpPermissions=[{k: v for k, v in p.items()
                                    if k in ("IpProtocol", "FromPort", "ToPort",
                                             "UserIdGroupPairs")} for p in refs],
                )
        gone = []
        for group in groups:
            delete_once_released(
                lambda g=group: self.ec2.delete_security_group(GroupId=g["GroupId"]),
                f"deleting security group {group['GroupId']}", self.progress,
                missing_code="InvalidGroup.NotFound", delay=delay, budget=budget)
            gone.append(f"security group {group['GroupId']} ({group['GroupName']})")
        return gone


def rules_of(group: dict) -> set[Rule]:
    """The group's TCP ingress rules as (port, kind, source) tuples."""
    rules: set[Rule] = set()
    for perm in group.get("IpPermissions") or []:
        if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != perm.get("ToPort"):
            continue  # deploy never makes these; leave a hand-made rule alone
        port = perm["FromPort"]
        rules.update((port, "cidr", r["CidrIp"]) for r in perm.get("IpRanges") or [])
        rules.update((port, "cidr6", r["CidrIpv6"]) for r in perm.get("Ipv6Ranges") or [])
        rules.update((port, "sg", p["GroupId"]) for p in perm.get("UserIdGroupPairs") or [])
    return rules


def _permission(rule: Rule) -> dict:
    port, kind, source = rule
    perm: dict = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if kind == "cidr":
        perm["IpRanges"] = [{"CidrIp": source}]
    elif kind == "cidr6":
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    return perm
