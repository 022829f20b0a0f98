"""The suite's own safety net: nothing may leave this machine."""

import socket

import boto3
import pytest
from offmachine import OffMachineTraffic

from infra.aws.clients import resolve_target
from infra.errors import UserError


def test_metadata_service_is_unreachable():
    with pytest.raises(OffMachineTraffic):
        socket.create_connection(("169.254.169.254", 80), timeout=1)


def test_aws_hosts_do_not_resolve():
    with pytest.raises(OffMachineTraffic):
        socket.getaddrinfo("ec2.us-east-1.amazonaws.com", 443)


def test_a_real_aws_call_fails_loudly():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with pytest.raises(OffMachineTraffic):
        ec2.describe_vpcs()


def test_credentials_are_fake():
    creds = boto3.session.Session().get_credentials()
    assert creds.access_key == "testing"


def test_infra_refuses_a_real_aws_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(UserError, match="refusing"):
        resolve_target("aws")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    assert resolve_target("aws").is_emulator


def test_the_guard_reaches_every_python_process_a_shell_command_starts(tmp_path):
    """tests/fresh_shell.py runs commands with the guard in their Python processes: an attempt
    off this machine fails there too, and is logged for the test to read."""
    from fresh_shell import Shell

    shell = Shell(tmp_path)
    done = shell.run(".venv/bin/python -c 'import socket; socket.getaddrinfo(\"example.com\", 80)'")
    assert done.returncode != 0 and "OffMachineTraffic" in done.stderr
    assert "example.com" in shell.off_machine()
