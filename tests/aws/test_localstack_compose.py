"""LocalStack: the compose file (parsed, as no Docker engine runs here) and the LocalStack
code path, with a real moto server standing in at LocalStack's endpoint."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from infra.aws.clients import Clients, resolve_target
from infra.errors import UserError

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.localstack.yml"

# repository:tag with a full x.y.z version; `latest`, a bare major or no tag are refused.
PINNED_IMAGE = re.compile(r"^localstack/localstack(-pro)?:(\d+)\.(\d+)\.(\d+)$")
REQUIRED_SERVICES = {"ec2", "elbv2", "ssm", "sts", "iam"}


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


SERVICE_NAMES = sorted(compose_services())


@pytest.fixture(scope="module", params=SERVICE_NAMES)
def localstack(request) -> dict:
    """Each LocalStack service (free and licensed), with the shared block merged in."""
    return compose_services()[request.param]


def environment(service: dict) -> dict[str, str]:
    """Compose allows a list of KEY=VALUE or a mapping; read either."""
    env = service["environment"]
    if isinstance(env, dict):
        return {key: str(value) for key, value in env.items()}
    return dict(item.split("=", 1) for item in env)


def test_one_service_by_default_the_licensed_one_on_request():
    services = compose_services()
    assert SERVICE_NAMES == ["localstack", "localstack-pro"]
    # `docker compose up` starts only services without a profile: the free image.
    assert [name for name, svc in services.items() if not svc.get("profiles")] == ["localstack"]
    assert services["localstack"]["image"].startswith("localstack/localstack:")
    assert services["localstack-pro"]["profiles"] == ["pro"]
    assert services["localstack-pro"]["image"].startswith("localstack/localstack-pro:")
    # Same version for both, so switching changes the licence, not the emulator.
    tags = {svc["image"].split(":")[1] for svc in services.values()}
    assert len(tags) == 1


def test_image_is_pinned(localstack):
    image = localstack["image"]
    assert PINNED_IMAGE.match(image), f"{image!r} is not pinned to an x.y.z tag"
    assert "latest" not in image


@pytest.mark.parametrize(
    "image",
    [
        "localstack/localstack",
        "localstack/localstack:latest",
        "localstack/localstack:4",
        "localstack/localstack:4.14",
        "localstack/localstack:stable",
        "localstack/localstack:${TAG}",
        "someone/localstack:4.14.0",
    ],
)
def test_pin_check_refuses_floating_tags(image):
    assert not PINNED_IMAGE.match(image)


def test_ports_are_the_gateway_and_service_range_on_loopback(localstack):
    ports = [str(p) for p in localstack["ports"]]
    assert "127.0.0.1:4566:4566" in ports
    assert "127.0.0.1:4510-4559:4510-4559" in ports
    assert all(p.startswith("127.0.0.1:") for p in ports), "publish on loopback only"


def test_auth_token_passes_through_from_the_shell(localstack):
    env = environment(localstack)
    # The value is taken from the caller's environment, empty if unset; never a literal.
    assert env["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"


def test_services_debug_and_vm_manager(localstack):
    env = environment(localstack)
    assert REQUIRED_SERVICES <= set(env["SERVICES"].split(","))
    assert re.fullmatch(r"\$\{DEBUG:-[01]\}|[01]", env["DEBUG"])
    assert env["EC2_VM_MANAGER"] == "mock"


def test_no_docker_socket_by_default(localstack):
    volumes = [str(v) for v in localstack.get("volumes", [])]
    assert not [v for v in volumes if "docker.sock" in v]


def test_healthcheck_asks_the_gateway(localstack):
    check = localstack["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "http://localhost:4566/_localstack/health" in " ".join(check["test"])
    assert int(check["retries"]) >= 1
    assert str(check["interval"]).endswith("s")


# --- the LocalStack code path, against a moto server at "LocalStack's" endpoint -----------


@pytest.fixture
def fake_localstack(moto_server, monkeypatch):
    # localstack-client prefers AWS_ENDPOINT_URL over LOCALSTACK_HOST: keep it out.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LOCALSTACK_HOST", moto_server.removeprefix("http://"))
    return moto_server


@pytest.mark.integration
def test_localstack_target_reaches_the_endpoint(fake_localstack):
    target = resolve_target("localstack", "us-east-1")
    assert target.endpoint_url == fake_localstack
    assert target.backend == "localstack" and target.is_emulator
    assert target.region == "us-east-1"

    clients = Clients(target)
    vpc_id = clients.ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    described = clients.ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert [v["CidrBlock"] for v in described] == ["10.42.0.0/16"]

    tg = clients.elbv2.create_target_group(
        Name="seed-lb-ls-test", Protocol="HTTP", Port=5000, VpcId=vpc_id, TargetType="instance"
    )["TargetGroups"][0]
    groups = clients.elbv2.describe_target_groups(Names=["seed-lb-ls-test"])["TargetGroups"]
    assert [(g["TargetGroupArn"], g["VpcId"]) for g in groups] == [(tg["TargetGroupArn"], vpc_id)]
    assert clients.sts.get_caller_identity()["Account"]

    # The calls went over HTTP to that server, not to an in-process mock: a plain client
    # aimed at the same endpoint sees the same VPC.
    plain = boto3.client("ec2", region_name="us-east-1", endpoint_url=fake_localstack)
    assert vpc_id in [v["VpcId"] for v in plain.describe_vpcs()["Vpcs"]]


def test_localstack_host_off_this_machine_is_refused(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LOCALSTACK_HOST", "localstack.example.com:4566")
    with pytest.raises(UserError, match="refusing"):
        resolve_target("localstack", "us-east-1")


def test_localstack_default_endpoint_is_the_compose_port(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("LOCALSTACK_HOST", raising=False)
    target = resolve_target("localstack", "us-east-1")
    assert target.endpoint_url == "http://localhost:4566"  # the port compose publishes


@pytest.mark.integration
def test_deploy_through_the_localstack_backend_delivers_the_user_data(fake_localstack, tmp_path):
    """`python -m infra deploy --backend localstack`, the command behind
    `make deploy-localstack`, against the stand-in: every instance gets the rendered boot
    script, byte for byte, and destroy leaves nothing behind."""
    from infra.aws.userdata import render_user_data

    stack = "lsud"
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infra", *args, "--backend", "localstack", "--stack", stack,
             "--state-dir", str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
        )

    deployed = cli("deploy", "--no-wait-healthy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    state = json.loads((tmp_path / f"{stack}.json").read_text())
    assert state["endpoint_url"] == fake_localstack

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=fake_localstack)
    expected = render_user_data(app_port=state["app_port"], stack=stack)
    assert len(state["instances"]) >= 1
    for instance in state["instances"]:
        attr = ec2.describe_instance_attribute(InstanceId=instance["id"], Attribute="userData")
        assert base64.b64decode(attr["UserData"]["Value"]).decode() == expected

    destroyed = cli("destroy")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    left = ec2.describe_vpcs(Filters=[{"Name": "tag:Stack", "Values": [stack]}])["Vpcs"]
    assert left == []
