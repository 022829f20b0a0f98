"""Helpers for the provisioning tests: a fault injector hooked into botocore's event system
(before-call / before-send), so that any AWS API call can fail the way real AWS fails, and a
census of every resource carrying a stack's tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from botocore.awsrequest import AWSResponse

from infra.aws.clients import Clients
from infra.aws.stack import Stack
from infra.config import PROJECT, TAG_PROJECT, TAG_STACK, Settings, stack_filters

REGION = "us-east-1"
STACK = "t-prov"
ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], env: dict[str, str] | None = None, endpoint: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m infra ARGS` as a user runs it: a real subprocess, in the repository."""
    env = dict(os.environ if env is None else env)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line a failed command prints, and nothing like a traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


class _Raw:
    """Just enough of a urllib3 response for botocore's AWSResponse."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, *args, **kwargs):
        yield self._body

    def read(self, *args, **kwargs):
        body, self._body = self._body, b""
        return body


def error_result(code: str, message: str = "injected", status: int = 400):
    """What a before-call handler returns to make the call fail with this AWS error."""
    parsed = {"Error": {"Code": code, "Message": message},
              "ResponseMetadata": {"HTTPStatusCode": status}}
    return AWSResponse("https://injected.invalid/", status, {}, _Raw(b"")), parsed


def throttle_response(request, protocol: str) -> AWSResponse:
    """A raw HTTP throttling answer, parsed by botocore and retried by its retry config."""
    if protocol == "ec2":
        body = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
                b"<Message>Request limit exceeded.</Message></Error></Errors>"
                b"<RequestID>injected</RequestID></Response>")
        headers = {"Content-Type": "text/xml"}
    elif protocol == "query":
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                b"<Message>Rate exceeded</Message></Error><RequestId>injected</RequestId>"
                b"</ErrorResponse>")
        headers = {"Content-Type": "text/xml"}
    else:
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1"}
    return AWSResponse(request.url, 400, headers, _Raw(body))


DRY_RUN = "(DryRun)"


def is_dry_run(params: dict) -> bool:
    """`params` of a before-call hook is the serialized request: EC2's query body."""
    body = params.get("body")
    return isinstance(body, dict) and str(body.get("DryRun")).lower() == "true"


def writes(calls: list[str]) -> list[str]:
    """The calls that may change something: not Describe*, Get* or a dry run."""
    return [c for c in calls
            if not c.split(".")[1].startswith(("Describe", "Get")) and not c.endswith(DRY_RUN)]


class Faults:
    """Counts every AWS API call made through the clients and injects failures.

    - `fail_at = k`: the k-th call (1-based) fails with InjectedFault, before reaching AWS.
    - `rules`: callables (operation, params) -> error code or None, checked on every call.
    """

    def __init__(self):
        self.calls: list[str] = []
        self.fail_at: int | None = None
        self.failed: str | None = None
        self.rules: list = []

    def reset(self) -> Faults:
        self.calls, self.fail_at, self.failed, self.rules = [], None, None, []
        return self

    def attach(self, clients: Clients) -> Faults:
        # Clients made later inherit the session's handlers; ones made already need their own.
        clients.session.events.register("before-call", self._before_call)
        for name in ("ec2", "elbv2", "ssm", "sts"):
            if name in vars(clients):
                getattr(clients, name).meta.events.register("before-call", self._before_call)
        return self

    def _before_call(self, model, params, **kwargs):
        op = f"{model.service_model.service_name}.{model.name}"
        # A dry run changes nothing: it is recorded apart, so that it never counts as a write.
        self.calls.append(f"{op}{DRY_RUN}" if is_dry_run(params) else op)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            self.failed = op
            return error_result("InjectedFault", f"injected failure at call {self.fail_at}")
        for rule in self.rules:
            code = rule(op, params)
            if code:
                return error_result(code, f"injected {code}")
        return None


def tagged_resources(clients: Clients, stack: str = STACK) -> dict[str, list[str]]:
    """Every live resource carrying the stack's tags, by kind, as the describe calls see it."""
    ec2, elbv2, flt = clients.ec2, clients.elbv2, stack_filters(stack)
    found = {
        "vpc": [v["VpcId"] for v in ec2.describe_vpcs(Filters=flt)["Vpcs"]],
        "subnet": [s["SubnetId"] for s in ec2.describe_subnets(Filters=flt)["Subnets"]],
        "igw": [i["InternetGatewayId"]
                for i in ec2.describe_internet_gateways(Filters=flt)["InternetGateways"]],
        "route_table": [r["RouteTableId"]
                        for r in ec2.describe_route_tables(Filters=flt)["RouteTables"]],
        "security_group": [g["GroupId"]
                           for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]],
        "instance": [i["InstanceId"]
                     for r in ec2.describe_instances(Filters=[*flt, {
                         "Name": "instance-state-name",
                         "Values": ["pending", "running", "stopping", "stopped",
                                    "shutting-down"]}])["Reservations"]
                     for i in r["Instances"]],
    }
    for kind, key, arn_key, op in (
        ("load_balancer", "LoadBalancers", "LoadBalancerArn", elbv2.describe_load_balancers),
        ("target_group", "TargetGroups", "TargetGroupArn", elbv2.describe_target_groups),
    ):
        arns = [x[arn_key] for x in op()[key]]
        ours = []
        for start in range(0, len(arns), 20):
            for d in elbv2.describe_tags(ResourceArns=arns[start:start + 20])["TagDescriptions"]:
                tags = {t["Key"]: t["Value"] for t in d["Tags"]}
                if tags.get(TAG_PROJECT) == PROJECT and tags.get(TAG_STACK) == stack:
                    ours.append(d["ResourceArn"])
        found[kind] = ours
    return found


def anything_billable_or_not(clients: Clients) -> dict[str, int]:
    """Everything in the account, tagged or not, besides what AWS gives every account (the
    default VPC, its subnets, gateway, route table and security group)."""
    ec2, elbv2 = clients.ec2, clients.elbv2
    default = [v["VpcId"] for v in ec2.describe_vpcs(
        Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]]
    vpcs = [v for v in ec2.describe_vpcs()["Vpcs"] if v["VpcId"] not in default]
    groups = [g for g in ec2.describe_security_groups()["SecurityGroups"]
              if g["VpcId"] not in default]
    subnets = [s for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] not in default]
    gateways = [g for g in ec2.describe_internet_gateways()["InternetGateways"]
                if not {a["VpcId"] for a in g.get("Attachments") or []} & set(default)]
    instances = [i for r in ec2.describe_instances(Filters=[{
        "Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped",
                                                  "shutting-down"]}])["Reservations"]
        for i in r["Instances"]]
    return {"vpc": len(vpcs), "subnet": len(subnets), "igw": len(gateways),
            "security_group": len(groups), "instance": len(instances),
            "load_balancer": len(elbv2.describe_load_balancers()["LoadBalancers"]),
            "target_group": len(elbv2.describe_target_groups()["TargetGroups"])}


def count(found: dict[str, list[str]]) -> dict[str, int]:
    return {kind: len(ids) for kind, ids in found.items()}


# anything_billable_or_not() of an account where nothing was made.
NOTHING = {"vpc": 0, "subnet": 0, "igw": 0, "security_group": 0, "instance": 0,
           "load_balancer": 0, "target_group": 0}


def moto_view(endpoint: str, region: str = REGION) -> Clients:
    """Clients straight to a moto server, past any proxy in front of it: what really exists."""
    from infra.aws.clients import Target

    return Clients(Target(region, endpoint))


FULL_STACK = {"vpc": 1, "subnet": 2, "igw": 1, "route_table": 1, "security_group": 2,
              "instance": 2, "load_balancer": 1, "target_group": 1}
EMPTY = dict.fromkeys(FULL_STACK, 0)


# --- a stack changed behind deploy's back ------------------------------------------------


def drift_everything_deploy_repairs(clients: Clients, stack: str):
    """Change the stack behind deploy's back, in each way deploy converges it back. Returns
    a function that removes what the drift added (it is not the stack's)."""
    ec2, elbv2, s = clients.ec2, clients.elbv2, quiet_stack(clients, fast_settings(stack)).network
    found = s.find()
    table = found.route_table
    other_igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=other_igw, VpcId=found.vpc["VpcId"])
    ec2.replace_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                      GatewayId=other_igw)
    lb = elbv2.describe_load_balancers(Names=[f"{stack}-alb"])["LoadBalancers"][0]
    app_sg = found.security_groups[f"{stack}-app-sg"]["GroupId"]
    elbv2.set_security_groups(LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[app_sg])
    spare = ec2.create_subnet(VpcId=found.vpc["VpcId"], CidrBlock="10.42.9.0/24",
                              AvailabilityZone="us-east-1c")["Subnet"]["SubnetId"]
    zones = [z["SubnetId"] for z in lb["AvailabilityZones"]]
    elbv2.set_subnets(LoadBalancerArn=lb["LoadBalancerArn"], Subnets=[zones[0], spare])
    listener = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]
    elbv2.modify_listener(ListenerArn=listener["ListenerArn"], DefaultActions=[{
        "Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
    tg = elbv2.describe_target_groups(Names=[f"{stack}-tg"])["TargetGroups"][0]
    elbv2.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/x")
    elbv2.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "300"}])
    stranger = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                 SubnetId=zones[0])["Instances"][0]["InstanceId"]
    elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": stranger}])
    mine = quiet_stack(clients, fast_settings(stack)).instances.find()
    ec2.stop_instances(InstanceIds=[mine[0]["InstanceId"]])

    def undo() -> None:
        ec2.terminate_instances(InstanceIds=[stranger])
        ec2.delete_subnet(SubnetId=spare)
        ec2.detach_internet_gateway(InternetGatewayId=other_igw, VpcId=found.vpc["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=other_igw)

    return undo


def fast_settings(stack: str, **changes):
    return Settings.fast(**{"stack": stack, "public_access": "203.0.113.7/32",
                            "state_dir": os.devnull, **changes})


def quiet_stack(clients: Clients, settings) -> Stack:
    return Stack(clients, settings, progress=lambda _message: None)
