"""`python -m infra policy` (make iam-policy): the IAM policy this tool needs, and no more.

Exactly the actions that deploy, plan, status, doctor, logs and destroy call; no wildcard
action.
tests/aws/test_iam_policy.py keeps the list true: it reads every AWS call in infra/aws and
infra/doctor from the source, records every call a run makes (a botocore before-call hook),
and runs deploy, status, doctor and destroy under moto's IAM enforcement with this policy
alone, then with one action removed.

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
  instance's console: the doctor also diagnoses instances launched by hand, untagged.

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

from infra.config import AMI_PARAMETER, PROJECT, TAG_PROJECT

EC2 = "arn:aws:ec2:*:*"
ELB = "arn:aws:elasticloadbalancing:*:*"
REQUEST_TAG = {"StringEquals": {f"aws:RequestTag/{TAG_PROJECT}": PROJECT}}
RESOURCE_TAG = {"StringEquals": {f"aws:ResourceTag/{TAG_PROJECT}": PROJECT}}

EC2_CREATES = ["ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateInternetGateway",
               "ec2:CreateRouteTable", "ec2:CreateSecurityGroup", "ec2:RunInstances"]
EC2_CREATED = [f"{EC2}:{kind}/*" for kind in ("vpc", "subnet", "internet-gateway",
                                              "route-table", "security-group", "instance",
                                              "volume")]
ELB_CREATES = ["elasticloadbalancing:CreateTargetGroup",
               "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateListener"]
ELB_OWN = [f"{ELB}:loadbalancer/app/*", f"{ELB}:targetgroup/*", f"{ELB}:listener/app/*"]


def _statement(sid: str, actions: list[str], resources: list[str] | str,
               condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                 "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


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
    # The AMI: Amazon Linux 2023's public parameter only.
    _statement("ReadTheAmazonLinuxAmiParameter", ["ssm:GetParameter"],
               f"arn:aws:ssm:*:*:parameter{AMI_PARAMETER.rsplit('/', 1)[0]}/*"),
    # What deploy creates must carry Project=seed-lb from its first moment.
    _statement("CreateOnlyTaggedEc2Resources", EC2_CREATES, EC2_CREATED, REQUEST_TAG),
    _statement("TagEc2ResourcesOnlyWhileCreatingThem", ["ec2:CreateTags"], EC2_CREATED,
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
    _statement("ChangeOnlyTaggedEc2Resources", [
        "ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:DeleteInternetGateway",
        "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:AssociateRouteTable",
        "ec2:DisassociateRouteTable", "ec2:DeleteRouteTable",
        "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteVpc",
        "ec2:StartInstances", "ec2:TerminateInstances",
    ], [f"{EC2}:{kind}/*" for kind in ("vpc", "subnet", "internet-gateway", "route-table",
                                       "security-group", "instance")], RESOURCE_TAG),
    _statement("CreateOnlyTaggedLoadBalancing", ELB_CREATES, ELB_OWN, REQUEST_TAG),
    _statement("TagLoadBalancingOnlyWhileCreatingIt", ["elasticloadbalancing:AddTags"],
               ELB_OWN, {"StringEquals": {"elasticloadbalancing:CreateAction":
                                          [a.split(":")[1] for a in ELB_CREATES]}}),
    _statement("ChangeOnlyTaggedLoadBalancing", [
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:SetSubnets", "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:ModifyListener", "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
    ], ELB_OWN, RESOURCE_TAG),
]

# Permissions AWS checks without a call of their own: tagging while creating.
IMPLIED = frozenset({"ec2:CreateTags", "elasticloadbalancing:AddTags"})


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
        epilog="examples:\n  python -m infra policy > seed-lb-policy.json\n"
        "  aws iam create-policy --policy-name seed-lb --policy-document file://seed-lb-policy.json\n"
        "  python -m infra policy --unscoped    # same actions, Resource \"*\", no conditions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--unscoped", action="store_true",
                        help="the same actions on Resource \"*\" without tag conditions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(document(scoped=not args.unscoped), indent=2))
    return 0
