"""The CLI as a user runs it (`python -m infra ...` in a subprocess) against a moto server:
bad input gets one line, an exit code other than 0 and nothing created; the whole
deploy / status / plan / destroy cycle works over HTTP, and so does the LocalStack backend."""

from __future__ import annotations

import json
import os

import pytest
from provision_helpers import EMPTY, count, one_error_line, run_cli, tagged_resources

from infra.aws.clients import Clients, Target

pytestmark = [pytest.mark.integration, pytest.mark.long]


def run(args, env, timeout=120):
    return run_cli(args, env, timeout=timeout)


@pytest.fixture(scope="module")
def shared_server(module_moto_server):
    """One moto server for the module: every test uses its own stack name."""
    return module_moto_server


@pytest.fixture
def server_env(shared_server):
    env = dict(os.environ)
    env["AWS_ENDPOINT_URL"] = shared_server
    return env


def nothing_created(endpoint: str, stack: str) -> bool:
    found = tagged_resources(Clients(Target("us-east-1", endpoint)), stack)
    return count(found) == EMPTY


@pytest.mark.parametrize("args, expected", [
    (["--stack", "bad_name!"], "bad stack name"),
    (["--region", "mars-east-1"], "unknown AWS region"),
    (["--count", "0"], "instance count 0 is below 1"),
    (["--public-access", "everyone"], "--public-access"),
])
def test_bad_input_one_line_nonzero_nothing_created(server_env, shared_server, args, expected):
    result = run(["deploy", *args], server_env)
    assert result.returncode != 0
    assert expected in one_error_line(result)
    assert nothing_created(shared_server, "seed-lb")
    assert nothing_created(shared_server, "bad_name!")


def test_missing_credentials(server_env, shared_server, tmp_path):
    env = {k: v for k, v in server_env.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SECURITY_TOKEN")}
    env["HOME"] = str(tmp_path)  # no ~/.aws either
    result = run(["deploy", "--stack", "nocreds"], env)
    assert result.returncode != 0
    assert "no AWS credentials" in one_error_line(result)
    assert nothing_created(shared_server, "nocreds")


def test_deploy_status_plan_destroy_cycle(server_env, shared_server, tmp_path):
    state_dir = tmp_path / "state"
    deployed = run(["deploy", "--stack", "clitest", "--state-dir", str(state_dir)], server_env)
    assert deployed.returncode == 0, deployed.stderr
    out = deployed.stdout
    state = json.loads((state_dir / "clitest.json").read_text())
    assert out.index("plan for stack clitest") < out.index("created VPC")  # plan first
    # a moto server's DNS name resolves nowhere: the summary says how to grade locally
    assert f"load balancer: {state['lb_dns']}" in out and "does not resolve" in out
    assert "make grade LB=127.0.0.1:8080" in out and "make destroy-aws STACK=clitest" in out
    for inst in state["instances"]:
        assert inst["id"] in out and inst["public_ip"] in out
    assert "target healthy" in out
    assert state["endpoint_url"] == shared_server

    status = run(["status", "--stack", "clitest"], server_env)
    assert status.returncode == 0, status.stderr
    assert f"dns name: {state['lb_dns']}" in status.stdout
    assert status.stdout.count("target: i-") == 2 and "healthy" in status.stdout

    plan = run(["plan", "--stack", "clitest"], server_env)
    assert plan.returncode == 0, plan.stderr
    assert not [line for line in plan.stdout.splitlines()
                if line.strip().startswith(("create", "delete"))]

    destroyed = run(["destroy", "--stack", "clitest", "--state-dir", str(state_dir)],
                    server_env)
    assert destroyed.returncode == 0, destroyed.stderr
    assert "nothing tagged with it is left" in destroyed.stdout
    assert not (state_dir / "clitest.json").exists()
    assert nothing_created(shared_server, "clitest")

    empty = run(["status", "--stack", "clitest"], server_env)
    assert "nothing deployed" in empty.stdout


def test_localstack_backend_against_a_stand_in(shared_server, tmp_path):
    """`--backend localstack` finds its endpoint through localstack-client (LOCALSTACK_HOST);
    a moto server stands in for LocalStack here, since no Docker engine runs."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["LOCALSTACK_HOST"] = shared_server.removeprefix("http://")
    deployed = run(["deploy", "--backend", "localstack", "--stack", "lstest", "--count", "1",
                    "--state-dir", str(tmp_path)], env)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads((tmp_path / "lstest.json").read_text())["endpoint_url"] == shared_server
    destroyed = run(["destroy", "--backend", "localstack", "--stack", "lstest",
                     "--state-dir", str(tmp_path)], env)
    assert destroyed.returncode == 0, destroyed.stderr
    assert nothing_created(shared_server, "lstest")


def test_help_lists_the_commands():
    result = run(["--help"], dict(os.environ))
    for command in ("deploy", "destroy", "plan", "status"):
        assert command in result.stdout
    deploy_help = run(["deploy", "--help"], dict(os.environ)).stdout
    for option in ("--count", "--public-access", "--key-name", "--default-vpc", "--stack",
                   "--region", "--backend"):
        assert option in deploy_help
