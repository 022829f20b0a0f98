"""`python -m infra policy`: exactly the actions the code calls, and enough on its own.

Three checks keep the list from drifting: every AWS call in infra/aws and infra/doctor, read
from the source, is in the policy and nothing else is; every call that runs make (deploy,
converging a stack that drifted in every way deploy repairs, plan, status, logs, doctor, destroy),
recorded with a botocore before-call hook, is in it; and under moto's IAM enforcement a user
with this policy alone runs deploy, status, logs, doctor and destroy, while one action less fails
naming it. moto matches a statement's resources only against "*" (and evaluates no
condition keys), so the enforcement run uses the policy's --unscoped form: the same actions.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import boto3
import botocore.session
import pytest
import requests
from botocore import xform_name
from moto import mock_aws
from provision_helpers import (
    EMPTY,
    ROOT,
    count,
    drift_everything_deploy_repairs,
    fast_settings,
    quiet_stack,
    run_cli,
    tagged_resources,
)

from infra.aws import policy
from infra.aws.clients import Clients, Target
from infra.aws.console_output import stack_logs
from infra.aws.failures import iam_action_of
from infra.aws.waits import STRICTER_WAITERS
from infra.doctor.diagnosis import diagnose

pytestmark = pytest.mark.long

SERVICES = ("ec2", "elbv2", "ssm", "sts", "elb")
# Which client a receiver's name stands for, in the source (self.ec2, clients.elbv2, ...).
RECEIVERS = {"ec2": "ec2", "elbv2": "elbv2", "ssm": "ssm", "sts": "sts",
             "first_call_sts": "sts"}


def _service_models():
    session = botocore.session.get_session()
    return {name: session.get_service_model(name) for name in SERVICES}


def _iam_action(model, operation: str) -> str:
    return iam_action_of(model.operation_model(operation))


def _receiver(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return RECEIVERS.get(node.id)
    if isinstance(node, ast.Attribute):
        return RECEIVERS.get(node.attr)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "client" and node.args and isinstance(node.args[0], ast.Constant):
        return node.args[0].value  # clients.client("elb")
    return None


def actions_in_source() -> dict[str, set[str]]:
    """IAM action -> where: every client operation the code names (called, or passed on as
    a function), every paginator, and every waiter's operation."""
    models = _service_models()
    operations = {svc: {xform_name(op): op for op in m.operation_names}
                  for svc, m in models.items()}
    waiters = {}
    for svc in ("ec2", "elbv2"):
        config = botocore.session.get_session().get_waiter_model(svc)._waiter_config
        config = {**config, **STRICTER_WAITERS[svc]["waiters"]}
        waiters.update({xform_name(name): (svc, w["operation"]) for name, w in config.items()})
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "infra").rglob("*.py")):
        if path.relative_to(ROOT).parts[1] not in ("aws", "doctor"):
            continue
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            hit = None
            if isinstance(node, ast.Attribute):
                service = _receiver(node.value)
                if service and node.attr in operations[service]:
                    hit = (service, operations[service][node.attr])
                if service and node.attr == "get_paginator":
                    continue  # its argument is read below
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "get_paginator" and node.args:
                service = _receiver(node.func.value)
                hit = (service, operations[service][node.args[0].value])
            if isinstance(node, ast.Constant) and node.value in waiters:
                hit = waiters[node.value]
            if hit:
                found.setdefault(_iam_action(models[hit[0]], hit[1]), set()).add(where)
    return found


def test_the_policy_is_exactly_what_the_code_calls():
    in_source = actions_in_source()
    allowed = policy.actions()
    missing = sorted(set(in_source) - allowed)
    unused = sorted(allowed - set(in_source) - policy.IMPLIED)
    assert missing == [], f"called but not in the policy: {missing}"
    assert unused == [], f"in the policy but called nowhere: {unused}"


def test_the_document_is_a_valid_least_privilege_policy():
    doc = policy.document()
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action and ":" in action, action
    # Every create carries the project's tag; every change and delete needs it.
    scoped = {a for s in doc["Statement"] if "Condition" in s for a in s["Action"]}
    for action in ("ec2:CreateVpc", "ec2:RunInstances", "ec2:TerminateInstances",
                   "ec2:DeleteVpc", "elasticloadbalancing:CreateLoadBalancer",
                   "elasticloadbalancing:DeleteLoadBalancer", "ec2:CreateTags",
                   "elasticloadbalancing:AddTags"):
        assert action in scoped, action
    unscoped = policy.document(scoped=False)
    assert policy.actions(unscoped) == policy.actions(doc)
    assert all(s["Resource"] == "*" and "Condition" not in s for s in unscoped["Statement"])


def test_the_command_prints_the_document():
    printed = run_cli(["policy"], dict(os.environ))
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == policy.document()
    plain = run_cli(["policy", "--unscoped"], dict(os.environ))
    assert json.loads(plain.stdout) == policy.document(scoped=False)
    print(f"policy: {len(policy.actions())} actions in {len(policy.STATEMENTS)} statements")


# --- every call a run makes -----------------------------------------------------------------


class Recorder:
    """before-call hook on the session: the IAM action of every call any client makes, while
    `on` (the test's own set-up calls are not the tool's)."""

    def __init__(self, clients: Clients):
        self.actions: set[str] = set()
        self.on = True
        clients.session.events.register("before-call", self)

    def __call__(self, model=None, **_kwargs) -> None:
        if self.on:
            self.actions.add(iam_action_of(model))


def test_every_call_of_every_command_is_in_the_policy(tmp_path):
    """Deploy, drift in every way deploy repairs, converge, plan, status, logs, doctor (by tags,
    by DNS name, and by a name that does not exist), destroy: each call is allowed."""
    with mock_aws():
        clients = Clients(Target("us-east-1", None))
        recorder = Recorder(clients)
        recorder.on = False
        clients.ec2.create_key_pair(KeyName="k")
        recorder.on = True
        settings = fast_settings("rec", state_dir=str(tmp_path))
        state = quiet_stack(clients, settings).deploy()
        recorder.on = False
        undo_drift = drift_everything_deploy_repairs(clients, "rec")
        recorder.on = True
        more = fast_settings("rec", state_dir=str(tmp_path), instance_count=3, key_name="k",
                         public_access="198.51.100.0/24")
        quiet_stack(clients, more).deploy()
        quiet_stack(clients, settings).deploy()  # back to two: one surplus instance terminated
        quiet_stack(clients, settings).plan()
        quiet_stack(clients, settings).status()
        stack_logs(clients.ec2, "rec")
        diagnose(clients, stack="rec")
        diagnose(clients, lb=state["lb_dns"])
        with pytest.raises(Exception, match="no Application Load Balancer named"):
            diagnose(clients, lb="no-such-alb")
        recorder.on = False
        undo_drift()
        recorder.on = True
        quiet_stack(clients, settings).destroy()
        assert count(tagged_resources(clients, "rec")) == EMPTY
    not_allowed = sorted(recorder.actions - policy.actions())
    assert not_allowed == [], not_allowed
    # Nearly all the policy is exercised here; the rest is only in the source scan above.
    unexercised = policy.actions() - recorder.actions - policy.IMPLIED
    print(f"exercised {len(recorder.actions & policy.actions())} of "
          f"{len(policy.actions())} actions; not exercised: {sorted(unexercised)}")
    assert len(unexercised) <= 3, sorted(unexercised)


# --- moto's IAM enforcement -----------------------------------------------------------------


@pytest.fixture(scope="module")
def enforcing(module_moto_process):
    """The moto server with IAM enforcement on, and an administrator to create users with."""
    endpoint = module_moto_process
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint)
    admin = _user(iam, "admin", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    yield endpoint, admin
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)


def _user(iam, name: str, document: dict) -> dict[str, str]:
    iam.create_user(UserName=name)
    arn = iam.create_policy(PolicyName=f"{name}-policy",
                            PolicyDocument=json.dumps(document))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _as(keys: dict[str, str], endpoint: str) -> dict[str, str]:
    """The environment of a user with these keys: no session token (they are long-term)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")}
    return {**env, **keys, "AWS_ENDPOINT_URL": endpoint}


def _admin_iam(endpoint: str, admin: dict[str, str]):
    return boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])


def _admin_clients(endpoint: str, admin: dict[str, str]) -> Clients:
    clients = Clients(Target("us-east-1", endpoint))
    clients.session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])
    return clients


def _commands(stack: str, state_dir: Path) -> list[list[str]]:
    where = ["--stack", stack, "--state-dir", str(state_dir)]
    return [["deploy", *where], ["status", "--stack", stack], ["logs", "--stack", stack],
            ["doctor", "--stack", stack], ["destroy", *where]]


@pytest.mark.integration
def test_the_policy_alone_runs_deploy_status_logs_doctor_and_destroy(enforcing, tmp_path):
    endpoint, admin = enforcing
    student = _user(_admin_iam(endpoint, admin), "student",
                    policy.document(scoped=False))
    nobody = run_cli(["status", "--stack", "iam"],
                     _as({**student, "AWS_SECRET_ACCESS_KEY": "wrong"}, endpoint))
    assert nobody.returncode != 0, "enforcement is not on: a wrong secret got through"
    for command in _commands("iam", tmp_path):
        result = run_cli(command, _as(student, endpoint))
        assert result.returncode == 0, f"{command[0]}: {result.stderr}{result.stdout[-2000:]}"
    assert count(tagged_resources(_admin_clients(endpoint, admin), "iam")) == EMPTY


@pytest.mark.integration
@pytest.mark.parametrize("removed, fails_in", [
    ("ssm:GetParameter", "deploy"),
    ("ec2:RunInstances", "deploy"),
    ("elasticloadbalancing:CreateLoadBalancer", "deploy"),
    ("elasticloadbalancing:DescribeTargetHealth", "deploy"),
    ("ec2:GetConsoleOutput", "logs"),
    ("ec2:TerminateInstances", "destroy"),
])
def test_one_action_less_fails_naming_it(enforcing, tmp_path, removed, fails_in):
    endpoint, admin = enforcing
    name = "less-" + removed.split(":")[1].lower()[:12]
    short = _user(_admin_iam(endpoint, admin), name,
                  policy.without(policy.document(scoped=False), removed))
    failed = None
    for command in _commands(name, tmp_path):
        result = run_cli(command, _as(short, endpoint))
        if result.returncode != 0:
            failed = (command[0], result)
            break
    # whatever was built is removed with the whole policy, so the server stays small
    full = _user(_admin_iam(endpoint, admin), f"{name}-f", policy.document(scoped=False))
    assert run_cli(_commands(name, tmp_path)[-1], _as(full, endpoint)).returncode == 0
    assert failed is not None, f"everything passed without {removed}"
    command, result = failed
    assert command == fails_in, (command, result.stderr)
    assert f"AWS denied {removed}" in result.stderr and "Traceback" not in result.stderr
    assert "python -m infra policy" in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("removed", ["ec2:DescribeSecurityGroups",
                                     "elasticloadbalancing:DescribeListeners"])
def test_the_doctor_denied_a_read_names_the_action(enforcing, tmp_path, removed):
    endpoint, admin = enforcing
    name = "doc-" + removed.split(":")[1].lower()[8:20]
    iam = _admin_iam(endpoint, admin)
    full = _user(iam, f"{name}-f", policy.document(scoped=False))
    deploy, _, _, doctor, destroy = _commands(name, tmp_path)
    assert run_cli(deploy, _as(full, endpoint)).returncode == 0
    short = _user(iam, name, policy.without(policy.document(scoped=False), removed))
    result = run_cli(doctor, _as(short, endpoint))
    assert run_cli(destroy, _as(full, endpoint)).returncode == 0
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert f"AWS denied {removed} while reading the stack" in result.stderr
    assert "python -m infra policy" in result.stderr and "a retry changes nothing" in \
        result.stderr
