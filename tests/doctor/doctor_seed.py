"""A healthy seed stack, built the way a student builds it by hand: plain boto3, no tags,
no project code. It doubles as "a stack the doctor did not create".

Faults are applied on top of it, one per test, with plain boto3 calls too; and
DescribeTargetHealth can be made to answer as AWS does (reason codes moto never gives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.awsrequest import AWSResponse

from infra.aws.clients import Clients

REGION = "us-east-1"
APP_PORT = 5000  # the seed's app port: what the doctor must expect
HEALTH_EVENT = "before-call.elastic-load-balancing-v2.DescribeTargetHealth"
HEALTH_HOOK_ID = "doctor-tests-target-health"


@dataclass
class SeedStack:
    ec2: object
    elbv2: object
    vpc_id: str = ""
    vpc_cidr: str = "10.0.0.0/16"
    subnet_ids: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    igw_id: str = ""
    main_rt_id: str = ""
    public_rt_id: str = ""
    lb_sg: str = ""
    inst_sg: str = ""
    default_sg: str = ""
    instance_ids: list[str] = field(default_factory=list)
    ami: str = ""
    tg_arn: str = ""
    lb_arn: str = ""
    suffix: str = ""  # keeps names unique when several stacks share one moto backend
    lb_name: str = ""
    lb_dns: str = ""
    listener_arn: str = ""

    def forward_to(self, tg_arn: str) -> None:
        self.elbv2.modify_listener(
            ListenerArn=self.listener_arn,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )

    def named(self, base: str) -> str:
        return f"{base}{self.suffix}"

    def new_target_group(self, name: str, port: int = APP_PORT, **extra) -> str:
        return self.elbv2.create_target_group(
            Name=self.named(name), Protocol="HTTP", Port=port, VpcId=self.vpc_id,
            TargetType="instance", HealthCheckPath="/health", **extra,
        )["TargetGroups"][0]["TargetGroupArn"]


def build_seed_stack(ec2, elbv2, *, suffix: str = "", ami: str | None = None) -> SeedStack:
    s = SeedStack(ec2=ec2, elbv2=elbv2, suffix=suffix)
    s.lb_name = s.named("student-alb")
    s.vpc_id = ec2.create_vpc(CidrBlock=s.vpc_cidr)["Vpc"]["VpcId"]
    s.zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"][:2]]
    for i, zone in enumerate(s.zones):
        s.subnet_ids.append(ec2.create_subnet(
            VpcId=s.vpc_id, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone,
        )["Subnet"]["SubnetId"])
        # the console's "Auto-assign public IP": students ssh in on the public address
        ec2.modify_subnet_attribute(SubnetId=s.subnet_ids[-1],
                                    MapPublicIpOnLaunch={"Value": True})
    s.igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=s.igw_id, VpcId=s.vpc_id)
    # Subnet 0 gets its own public route table (explicit association); subnet 1 relies on
    # the VPC's main table: both ways a student ends up with.
    s.main_rt_id = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [s.vpc_id]}, {"Name": "association.main", "Values": ["true"]},
    ])["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=s.main_rt_id, DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=s.igw_id)
    s.public_rt_id = ec2.create_route_table(VpcId=s.vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=s.public_rt_id, DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=s.igw_id)
    ec2.associate_route_table(RouteTableId=s.public_rt_id, SubnetId=s.subnet_ids[0])

    s.default_sg = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [s.vpc_id]}, {"Name": "group-name", "Values": ["default"]},
    ])["SecurityGroups"][0]["GroupId"]
    s.lb_sg = ec2.create_security_group(
        GroupName="alb-http", Description="HTTP from anywhere", VpcId=s.vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    s.inst_sg = ec2.create_security_group(
        GroupName="seed-app", Description="app from the ALB", VpcId=s.vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=s.inst_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": APP_PORT, "ToPort": APP_PORT,
         "UserIdGroupPairs": [{"GroupId": s.lb_sg}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ])

    s.ami = ami or any_ami(ec2)
    for subnet_id in s.subnet_ids:
        s.instance_ids.append(ec2.run_instances(
            ImageId=s.ami, InstanceType="t2.micro", MinCount=1, MaxCount=1,
            SubnetId=subnet_id, SecurityGroupIds=[s.inst_sg],
        )["Instances"][0]["InstanceId"])

    s.tg_arn = s.new_target_group("seed-tg")
    elbv2.register_targets(TargetGroupArn=s.tg_arn,
                           Targets=[{"Id": i, "Port": APP_PORT} for i in s.instance_ids])
    lb = elbv2.create_load_balancer(
        Name=s.lb_name, Subnets=s.subnet_ids, SecurityGroups=[s.lb_sg],
        Scheme="internet-facing", Type="application", IpAddressType="ipv4",
    )["LoadBalancers"][0]
    s.lb_arn, s.lb_dns = lb["LoadBalancerArn"], lb["DNSName"]
    s.listener_arn = elbv2.create_listener(
        LoadBalancerArn=s.lb_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": s.tg_arn}],
    )["Listeners"][0]["ListenerArn"]
    return s


def any_ami(ec2) -> str:
    """One of moto's stock images (listing them all is slow: cache the answer)."""
    return ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]


def inject_target_health(clients: Clients, descriptions: list[dict]) -> None:
    """Make DescribeTargetHealth answer as AWS would, with reason codes moto does not produce.

    Only that one call is replaced (on the project's client); everything else is real moto.
    The `clients` fixture removes the hook after the test.
    """

    def answer(**_kwargs):
        return (AWSResponse("https://elbv2.invalid/", 200, {}, None),
                {"TargetHealthDescriptions": descriptions,
                 "ResponseMetadata": {"HTTPStatusCode": 200}})

    clients.elbv2.meta.events.register(HEALTH_EVENT, answer, unique_id=HEALTH_HOOK_ID)


def aws_health(instance_ids, state, reason=None, description=None, port=APP_PORT) -> list[dict]:
    health = {"State": state}
    if reason:
        health["Reason"] = reason
    if description:
        health["Description"] = description
    return [{"Target": {"Id": i, "Port": port}, "HealthCheckPort": str(port),
             "TargetHealth": dict(health)} for i in instance_ids]
