"""`python -m infra doctor` as a user runs it: a real subprocess against a moto server on a
loopback port (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from doctor_seed import REGION, any_ami, build_seed_stack

from infra.doctor.findings import ERROR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def moto_endpoint(module_moto_server):
    return module_moto_server


@pytest.fixture(scope="module")
def server_seed(moto_endpoint):
    """The hand-built stack, in the moto server (through its HTTP endpoint)."""
    session = boto3.session.Session(region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    elbv2 = session.client("elbv2", endpoint_url=moto_endpoint)
    return build_seed_stack(ec2, elbv2, suffix="-cli", ami=any_ami(ec2))


def doctor(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    return subprocess.run([sys.executable, "-m", "infra", "doctor", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_cli_healthy_then_broken_then_json(moto_endpoint, server_seed):
    s = server_seed
    ok = doctor(moto_endpoint, "--lb", s.lb_dns)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "LB_FOUND" in ok.stdout and "doctor: OK - 0 error(s), 0 warning(s)" in ok.stdout

    s.ec2.revoke_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    try:
        broken = doctor(moto_endpoint, "--lb", s.lb_name)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert "ERROR   LB_SG_NO_HTTP" in broken.stdout and "fix: " in broken.stdout
        assert broken.stdout.strip().endswith("doctor: FAIL - 1 error(s), 0 warning(s)")

        as_json = doctor(moto_endpoint, "--lb", s.lb_name, "--json")
        assert as_json.returncode == 1
        report = json.loads(as_json.stdout)
        assert report["ok"] is False
        [finding] = [f for f in report["findings"] if f["severity"] == ERROR]
        assert finding["code"] == "LB_SG_NO_HTTP" and finding["fix"] and finding["message"]
    finally:
        s.ec2.authorize_security_group_ingress(GroupId=s.lb_sg, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


@pytest.mark.integration
def test_cli_not_found_is_one_clear_line(moto_endpoint, server_seed):
    result = doctor(moto_endpoint, "--stack", "nothing-here")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no load balancer tagged")
    assert "Traceback" not in result.stderr and "--lb" in result.stderr


@pytest.mark.integration
def test_cli_unreachable_endpoint_is_one_clear_line(free_port):
    result = doctor(f"http://127.0.0.1:{free_port}", "--lb", "any-alb")
    assert result.returncode == 2, result.stderr
    # A stopped emulator on this machine: it says so and how to start one, not "the network"
    assert result.stderr.startswith(f"error: no emulator answers at http://127.0.0.1:{free_port}: "
                                    "start it (`.venv/bin/moto_server"), result.stderr
    assert "make local-up" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
def test_cli_without_credentials_is_one_clear_line(moto_endpoint):
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SECURITY_TOKEN", "AWS_PROFILE")}
    env["AWS_ENDPOINT_URL"] = moto_endpoint
    result = subprocess.run([sys.executable, "-m", "infra", "doctor", "--lb", "any-alb"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no AWS credentials")
    assert "Traceback" not in result.stderr
