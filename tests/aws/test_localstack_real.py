"""LocalStack's free code, for real (`make test-localstack`, which CI runs; `make test` skips
this file): LocalStack 4.13.1 from .venv-localstack, started and stopped by `python -m infra
localstack up|down` as `make localstack-up|down` runs it, bound to 127.0.0.1 on a free port.

Against it, through the `--backend localstack` path (localstack-client's endpoint from
LOCALSTACK_HOST), with LocalStack's conventional keys and region as `make deploy-localstack`
sets them:
- deploy runs its whole preflight (STS, the AMI from SSM, the instance type and zones,
  RunInstances as a dry run), then stops at ELBv2, which the free code answers with 501,
  with the clear line, and leaves nothing behind;
- plan, status, doctor and destroy each answer in one line, never a traceback.
What LocalStack saw is read from its own request log.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import boto3
import pytest
from fresh_shell import GUARD_SITE, Shell
from provision_helpers import ROOT

from infra.aws.localstack import CLIENT_ENV, VENV
from infra.local.processes import held_port

pytestmark = [
    pytest.mark.integration, pytest.mark.long,
    pytest.mark.skipif(os.environ.get("SEEDLB_LOCALSTACK") != "1",
                       reason="LocalStack for real: `make test-localstack` (CI runs it)"),
]

NO_ELBV2 = "has no Elastic Load Balancing v2"


def _infra(args: list[str], env: dict[str, str], timeout: float = 240):
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def localstack(tmp_path_factory):
    """LocalStack up on a free port, as `make localstack-up` starts it; down at the end,
    timed. Yields (endpoint, state directory, the environment a command gets). The port is
    held until LocalStack binds it (hypercorn binds with SO_REUSEADDR)."""
    assert (VENV / "bin" / "python").exists(), "run `make setup-localstack` first"
    with held_port() as port:
        yield from _localstack_on(port, tmp_path_factory.mktemp("localstack"))


def _localstack_on(port: int, state):
    # LocalStack itself runs under the suite's loopback guard: a lookup or connection off
    # this machine (its catalog, analytics, certificates) is logged, and fails the run.
    offmachine = state / "offmachine.log"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "LOCALSTACK_"))}
    base.update(PYTHONPATH=str(GUARD_SITE), SEEDLB_OFFMACHINE_LOG=str(offmachine))
    started = time.monotonic()
    # A profile this machine lacks, as a student's shell may name: up must not read it
    up = _infra(["localstack", "up", "--port", str(port), "--dir", str(state)],
                {**base, "AWS_PROFILE": "no-such-profile"})
    took = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    env = {**base, **CLIENT_ENV, "LOCALSTACK_HOST": f"127.0.0.1:{port}",
           "SEEDLB_LOOPBACK_ONLY": "1"}
    try:
        print(f"LocalStack up (installed, started, services warm): {took:.1f} s")
        yield f"http://127.0.0.1:{port}", state, env
    finally:
        started = time.monotonic()
        down = _infra(["localstack", "down", "--port", str(port), "--dir", str(state)], base)
        print(f"LocalStack down: {time.monotonic() - started:.1f} s: {down.stdout.strip()}")
        assert down.returncode == 0, down.stderr
        assert not (state / "localstack.pid").exists()
        assert not offmachine.exists(), offmachine.read_text()


def _requests(state) -> list[str]:
    """What LocalStack answered, from its log: 'ec2.RunInstances => 412 (DryRunOperation)'."""
    log = (state / "localstack.log").read_text(errors="replace")
    return re.findall(r"AWS (\w+\.\w+ => \d+(?: \(\w+\))?)", log)


def test_it_listens_on_loopback_only(localstack):
    endpoint, _, _ = localstack
    port = int(endpoint.rsplit(":", 1)[1])
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(OSError):  # another loopback address: nothing listens there
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_deploy_runs_its_preflight_then_stops_at_elbv2_leaving_nothing(localstack):
    endpoint, state, env = localstack
    before = len(_requests(state))
    started = time.monotonic()
    result = _infra(["deploy", "--backend", "localstack", "--stack", "lsreal", "--state-dir",
                     str(state / "stacks")], env)
    took = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr  # a preflight refusal
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and NO_ELBV2 in lines[0] and endpoint in lines[0], result.stderr
    seen = _requests(state)[before:]
    print(f"deploy against LocalStack: {took:.1f} s, {len(seen)} requests: {seen}")
    for wanted in ("sts.GetCallerIdentity => 200", "ec2.DescribeAvailabilityZones => 200",
                   "ec2.DescribeInstanceTypes => 200",
                   "ec2.DescribeInstanceTypeOfferings => 200", "ssm.GetParameter => 200",
                   "ec2.RunInstances => 412 (DryRunOperation)",
                   "elbv2.DescribeLoadBalancers => 501 (InternalFailure)"):
        assert wanted in seen, (wanted, seen)
    assert seen[-1] == "elbv2.DescribeLoadBalancers => 501 (InternalFailure)", seen
    made = [r for r in seen if re.match(r"\w+\.(Create|Run|Attach|Authorize|Associate)", r)
            and "DryRun" not in r]
    assert made == []
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    assert ec2.describe_instances()["Reservations"] == []
    assert not (state / "stacks" / "lsreal.json").exists()


@pytest.mark.parametrize("command", [
    ["plan"], ["status"], ["doctor"], ["destroy", "--state-dir", "{state}/stacks"],
])
def test_every_other_command_answers_in_one_line(localstack, command):
    endpoint, state, env = localstack
    args = [a.replace("{state}", str(state)) for a in command]
    result = _infra([*args, "--backend", "localstack", "--stack", "lsreal"], env)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if result.returncode:
        assert len(errors) == 1 and NO_ELBV2 in errors[0], output
    print(f"{command[0]}: exit {result.returncode}: {(errors or [output.strip()])[-1][:160]}")


def _docs_block() -> list[str]:
    """docs/aws.md's LocalStack block, a command a line, comments dropped."""
    text = (ROOT / "docs" / "aws.md").read_text()
    section = text[text.index("## LocalStack"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_docs_block_runs_as_printed_in_a_fresh_shell(tmp_path):
    """docs/aws.md's three commands, typed into a fresh shell on LocalStack's own port
    (4566): up answers, deploy stops at ELBv2 with its one line and creates nothing, down
    stops it. The hint tests (tests/hints_run.py) leave these to this file."""
    commands = _docs_block()
    assert commands == ["make localstack-up", "make deploy-localstack", "make localstack-down"]
    if socket.socket().connect_ex(("127.0.0.1", 4566)) == 0:
        pytest.skip("something already listens on 127.0.0.1:4566 (a LocalStack of yours?)")
    shell = Shell(tmp_path)
    up = shell.run(commands[0], timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        deploy = shell.run(commands[1])
        output = deploy.stdout + deploy.stderr
        assert deploy.returncode != 0 and "Traceback" not in output, output
        assert NO_ELBV2 in output and "localhost:4566" in output, output  # the client default
        assert not list((shell.checkout / ".state").glob("*.json"))  # nothing was built
    finally:
        down = shell.run(commands[2], timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert socket.socket().connect_ex(("127.0.0.1", 4566)) != 0
    assert shell.off_machine() == ""
