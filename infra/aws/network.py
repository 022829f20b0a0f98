"""The stack's network: VPC, two public subnets in two AZs, internet gateway and routes
(the two security groups are security_groups.py's). Everything is found again by its tags,
never by a remembered id.

EC2 is eventually consistent: an id just created may be unknown to the next call. After each
create, a waiter (vpc_available, internet_gateway_exists, subnet_available; see
waits.STRICTER_WAITERS) sees it before anything names it; the route table has no waiter, so
the calls naming it go through waits.until_visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from infra.aws.security_groups import ANYWHERE_V4, find_groups
from infra.aws.waits import Waits, delete_once_released, ignore_missing
from infra.config import Settings, name_tag, stack_filters, stack_tags


@dataclass
class NetworkIds:
    vpc_id: str
    subnets: list[tuple[str, str]]  # (subnet id, AZ), one per AZ, in AZ order


@dataclass
class FoundNetwork:
    """What exists of the stack's network right now."""

    vpc: dict | None = None
    subnets: dict[str, dict] = field(default_factory=dict)  # by Name tag
    igw: dict | None = None
    route_table: dict | None = None
    security_groups: dict[str, dict] = field(default_factory=dict)  # by Name tag


class Network:
    def __init__(self, ec2, settings: Settings, progress: Callable[[str], None]):
        self.ec2 = ec2
        self.settings = settings
        self.progress = progress
        self.waits = Waits(ec2, settings, progress)

    # --- names and tags -----------------------------------------------------------------

    def subnet_name(self, index: int) -> str:
        return self.settings.name(f"public-{index + 1}")

    def _tag_spec(self, resource_type: str, name: str) -> list[dict]:
        tags = stack_tags(self.settings.stack, name)
        return [{"ResourceType": resource_type, "Tags": tags}]

    def _filters(self, *extra: dict) -> list[dict]:
        return [*stack_filters(self.settings.stack), *extra]

    # --- reading ------------------------------------------------------------------------

    def find(self) -> FoundNetwork:
        ec2, found = self.ec2, FoundNetwork()
        if not self.settings.use_default_vpc:
            vpcs = ec2.describe_vpcs(Filters=self._filters())["Vpcs"]
            found.vpc = vpcs[0] if vpcs else None
            for subnet in ec2.describe_subnets(Filters=self._filters())["Subnets"]:
                found.subnets[name_tag(subnet) or subnet["SubnetId"]] = subnet
            igws = ec2.describe_internet_gateways(Filters=self._filters())["InternetGateways"]
            found.igw = igws[0] if igws else None
            tables = ec2.describe_route_tables(Filters=self._filters())["RouteTables"]
            found.route_table = tables[0] if tables else None
        found.security_groups = find_groups(ec2, self.settings.stack)
        return found

    def default_vpc(self) -> tuple[str, dict[str, str]]:
        """The account's default VPC and its default subnet in each AZ."""
        from infra.errors import UserError

        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise UserError(
                "this region has no default VPC: drop --default-vpc to build a dedicated one"
            )
        vpc_id = vpcs[0]["VpcId"]
        subnets = self.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": "default-for-az", "Values": ["true"]}]
        )["Subnets"]
        # Default subnets route to the default VPC's internet gateway; the instances ask for
        # their public IP at launch (AssociatePublicIpAddress), whatever the subnet's setting.
        by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
        if len(by_zone) < 2:
            raise UserError(
                f"the default VPC {vpc_id} has default subnets in {len(by_zone)} Availability "
                "Zone(s); an ALB needs two: drop --default-vpc to build a dedicated VPC"
            )
        return vpc_id, by_zone

    # --- converging ---------------------------------------------------------------------

    def ensure(self, zones: tuple[str, str],
               default: tuple[str, dict[str, str]] | None = None,
               found: FoundNetwork | None = None) -> NetworkIds:
        """Create or repair the VPC, subnets, gateway and routes; return their ids.

        `default` is the default VPC and its subnets by AZ, when the stack uses it.
        """
        if default is not None:
            vpc_id, by_zone = default
            return NetworkIds(vpc_id, [(by_zone[z], z) for z in zones])
        found = self.find() if found is None else found
        vpc_id = self._ensure_vpc(found)
        igw_id = self._ensure_igw(found, vpc_id)
        subnets = self._ensure_subnets(found, vpc_id, zones)
        self._ensure_routes(found, vpc_id, igw_id, [s for s, _ in subnets])
        return NetworkIds(vpc_id, subnets)

    def _ensure_vpc(self, found: FoundNetwork) -> str:
        if found.vpc:
            return found.vpc["VpcId"]
        vpc = self.ec2.create_vpc(
            CidrBlock=self.settings.vpc_cidr,
            TagSpecifications=self._tag_spec("vpc", self.settings.name("vpc")),
        )["Vpc"]
        self.progress(f"created VPC {vpc['VpcId']} ({self.settings.vpc_cidr})")
        self.waits.created("vpc_available", f"VPC {vpc['VpcId']}", VpcIds=[vpc["VpcId"]])
        return vpc["VpcId"]

    def _ensure_igw(self, found: FoundNetwork, vpc_id: str) -> str:
        igw = found.igw
        if igw is None:
            igw = self.ec2.create_internet_gateway(
                TagSpecifications=self._tag_spec("internet-gateway", self.settings.name("igw"))
            )["InternetGateway"]
            self.progress(f"created internet gateway {igw['InternetGatewayId']}")
            igw_id = igw["InternetGatewayId"]
            self.waits.created("internet_gateway_exists", f"internet gateway {igw_id}",
                               InternetGatewayIds=[igw_id])
        attached = {a["VpcId"] for a in igw.get("Attachments") or []}
        if vpc_id not in attached:
            self.ec2.attach_internet_gateway(
                InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc_id
            )
            self.progress(f"attached internet gateway to {vpc_id}")
        return igw["InternetGatewayId"]

    def _ensure_subnets(self, found: FoundNetwork, vpc_id: str, zones: tuple[str, str]) \
            -> list[tuple[str, str]]:
        result, created = [], []
        for index, zone in enumerate(zones):
            name = self.subnet_name(index)
            subnet = found.subnets.get(name)
            if subnet is None:
                subnet = self.ec2.create_subnet(
                    VpcId=vpc_id,
                    AvailabilityZone=zone,
                    CidrBlock=self._subnet_cidr(index),
                    TagSpecifications=self._tag_spec("subnet", name),
                )["Subnet"]
                self.progress(f"created subnet {subnet['SubnetId']} in {zone}")
                created.append(subnet["SubnetId"])
            # No MapPublicIpOnLaunch: the instances ask for a public IP at launch instead of
            # relying on a subnet attribute changed moments before.
            result.append((subnet["SubnetId"], subnet["AvailabilityZone"]))
        if created:
            self.waits.created("subnet_available", f"subnets {', '.join(created)}",
                               SubnetIds=created)
        return result

    def _subnet_cidr(self, index: int) -> str:
        import ipaddress

        vpc = ipaddress.ip_network(self.settings.vpc_cidr)
        return str(list(vpc.subnets(new_prefix=24))[index])

    def _ensure_routes(self, found: FoundNetwork, vpc_id: str, igw_id: str,
                       subnet_ids: list[str]) -> None:
        table = found.route_table
        if table is None:
            table = self.ec2.create_route_table(
                VpcId=vpc_id, TagSpecifications=self._tag_spec("route-table",
                                                                self.settings.name("rt"))
            )["RouteTable"]
            self.progress(f"created route table {table['RouteTableId']}")
        table_id = table["RouteTableId"]
        default_routes = [r for r in table.get("Routes") or []
                          if r.get("DestinationCidrBlock") == ANYWHERE_V4]
        # EC2 has no waiter for a route table: the calls naming it retry a NotFound.
        if not default_routes:
            self.waits.visible(lambda: self.ec2.create_route(
                RouteTableId=table_id, DestinationCidrBlock=ANYWHERE_V4, GatewayId=igw_id),
                f"adding the default route to {table_id}")
        elif default_routes[0].get("GatewayId") != igw_id:
            self.waits.visible(lambda: self.ec2.replace_route(
                RouteTableId=table_id, DestinationCidrBlock=ANYWHERE_V4, GatewayId=igw_id),
                f"replacing the default route of {table_id}")
        associated = {a.get("SubnetId") for a in table.get("Associations") or []}
        for subnet_id in subnet_ids:
            if subnet_id not in associated:
                self.waits.visible(lambda s=subnet_id: self.ec2.associate_route_table(
                    RouteTableId=table_id, SubnetId=s), f"associating {table_id} with {subnet_id}")

    # --- tearing down -------------------------------------------------------------------

    def destroy(self, delay: float, budget: float) -> list[str]:
        """Delete every tagged network resource, in dependency order (the security groups
        first: security_groups.py). Returns what went."""
        if self.settings.use_default_vpc:
            return []  # the default VPC is the account's, never ours to delete
        ec2, gone = self.ec2, []
        for table in ec2.describe_route_tables(Filters=self._filters())["RouteTables"]:
            for assoc in table.get("Associations") or []:
                if not assoc.get("Main"):
                    ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
            ignore_missing("InvalidRouteTableID.NotFound", ec2.delete_route_table,
                           RouteTableId=table["RouteTableId"])
            gone.append(f"route table {table['RouteTableId']}")
        for igw in ec2.describe_internet_gateways(Filters=self._filters())["InternetGateways"]:
            for attachment in igw.get("Attachments") or []:
                ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"],
                                            VpcId=attachment["VpcId"])
            ignore_missing("InvalidInternetGatewayID.NotFound", ec2.delete_internet_gateway,
                           InternetGatewayId=igw["InternetGatewayId"])
            gone.append(f"internet gateway {igw['InternetGatewayId']}")
        for subnet in ec2.describe_subnets(Filters=self._filters())["Subnets"]:
            delete_once_released(lambda s=subnet: ec2.delete_subnet(SubnetId=s["SubnetId"]),
                                 f"deleting subnet {subnet['SubnetId']}", self.progress,
                                 missing_code="InvalidSubnetID.NotFound", delay=delay,
                                 budget=budget)
            gone.append(f"subnet {subnet['SubnetId']}")
        for vpc in ec2.describe_vpcs(Filters=self._filters())["Vpcs"]:
            delete_once_released(lambda v=vpc: ec2.delete_vpc(VpcId=v["VpcId"]),
                                 f"deleting VPC {vpc['VpcId']}", self.progress,
                                 missing_code="InvalidVpcID.NotFound", delay=delay,
                                 budget=budget)
            gone.append(f"VPC {vpc['VpcId']}")
        return gone
