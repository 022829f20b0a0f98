"""Region, credentials and the network, as a user meets them: the real `python -m infra`
in a subprocess, with no region, no credentials, an expired SSO login or no answer at all.
Each gets one line that says what to do, quickly, with no traceback, and nothing sent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from provision_helpers import ROOT, one_error_line, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.long]

AWS_COMMANDS = ["deploy", "destroy", "status", "plan"]
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN", "AWS_PROFILE")


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never answers: a network that is gone."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def user_env(tmp_path, *, region: str | None, credentials: bool, endpoint: str) -> dict:
    """A user's environment: no AWS settings but the ones given; empty AWS config files."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", *([] if credentials
                                                               else CREDENTIALS))}
    for name in ("config", "credentials"):
        (tmp_path / name).write_text("")
    env.update(AWS_CONFIG_FILE=str(tmp_path / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               HOME=str(tmp_path), AWS_ENDPOINT_URL=endpoint)
    if region:
        env["AWS_REGION"] = region
    return env


MISSING = {
    # what is missing: (environment, the line's start, what it must name)
    "region": ({"region": None, "credentials": True}, "no AWS region set",
               ("--region", "AWS_REGION", "aws configure")),
    "credentials": ({"region": "us-east-1", "credentials": False}, "no AWS credentials found",
                    ("aws configure", "aws sso login", "AWS_SESSION_TOKEN", "Learner Lab")),
}


@pytest.mark.parametrize("missing", sorted(MISSING))
@pytest.mark.parametrize("command", AWS_COMMANDS)
def test_no_region_or_no_credentials_is_one_line_that_says_what_to_do(tmp_path, command,
                                                                      missing, closed_port):
    # Nothing listens at the endpoint: the answer must come before any request.
    given, starts, ways = MISSING[missing]
    env = user_env(tmp_path, endpoint=f"http://127.0.0.1:{closed_port}", **given)
    started = time.monotonic()
    result = run_cli([command, "--stack", "missing"], env)
    took = time.monotonic() - started
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith(f"error: {starts}")
    for way in ways:
        assert way in line
    print(f"{command} without {missing}: {took:.2f}s")


def test_doctor_without_a_region_says_the_same(tmp_path, module_moto_server):
    env = user_env(tmp_path, region=None, credentials=True, endpoint=module_moto_server)
    result = run_cli(["doctor", "--stack", "noregion"], env)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "no AWS region set" in line and "AWS_REGION" in line


def test_doctor_without_credentials_is_one_line_too(tmp_path, module_moto_server):
    env = user_env(tmp_path, region="us-east-1", credentials=False,
                   endpoint=module_moto_server)
    result = run_cli(["doctor", "--stack", "nocreds"], env)
    assert result.returncode == 2
    assert "no AWS credentials" in one_error_line(result)


def test_an_expired_sso_login_says_aws_sso_login(tmp_path, closed_port):
    env = user_env(tmp_path, region=None, credentials=False,
                   endpoint=f"http://127.0.0.1:{closed_port}")
    (tmp_path / "config").write_text(
        "[profile student]\nsso_session = school\nsso_account_id = 123456789012\n"
        "sso_role_name = Student\nregion = us-east-1\n\n[sso-session school]\n"
        "sso_start_url = https://school.awsapps.com/start\nsso_region = us-east-1\n")
    env["AWS_PROFILE"] = "student"
    result = run_cli(["status", "--stack", "sso"], env)
    assert result.returncode == 2
    assert "run `aws sso login --profile student`" in one_error_line(result)


def test_a_profile_that_does_not_exist_is_one_line(tmp_path, closed_port):
    env = user_env(tmp_path, region="us-east-1", credentials=False,
                   endpoint=f"http://127.0.0.1:{closed_port}")
    env["AWS_PROFILE"] = "nosuch"
    result = run_cli(["deploy", "--stack", "noprofile"], env)
    assert result.returncode == 2
    assert "'nosuch'" in one_error_line(result) and "list-profiles" in result.stderr


def test_temporary_keys_without_their_session_token(tmp_path, module_moto_server):
    """Learner Lab's keys start with ASIA; without AWS_SESSION_TOKEN AWS does not know them."""
    from strict_aws import StrictAWS, Strictness

    answers = {"sts:GetCallerIdentity": (403, "InvalidClientTokenId",
                                         "The security token included in the request is "
                                         "invalid.")}
    with StrictAWS(module_moto_server, Strictness(answers=answers)) as proxy:
        env = user_env(tmp_path, region="us-east-1", credentials=False, endpoint=proxy.url)
        env.update(AWS_ACCESS_KEY_ID="ASIAEXAMPLEEXAMPLE00", AWS_SECRET_ACCESS_KEY="x")
        result = run_cli(["status", "--stack", "asia"], env)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "ASIA" in line and "AWS_SESSION_TOKEN" in line


def timed_cli(args: list[str], env: dict[str, str]):
    """The command's result, and how long it took."""
    started = time.monotonic()
    result = run_cli(args, env, timeout=120)
    return result, time.monotonic() - started


def test_no_network_answers_within_seconds(tmp_path, silent_port):
    """The endpoint accepts the connection and never answers, as a dead network does: the
    first call's tight timeouts answer in seconds, not botocore's default minutes. A loopback
    endpoint is an emulator to the tool, which gives it two reads of 6 s (a service loading);
    real AWS gets two of 2 s (checked below)."""
    env = user_env(tmp_path, region="us-east-1", credentials=True,
                   endpoint=f"http://127.0.0.1:{silent_port}")
    result, took = timed_cli(["deploy", "--stack", "offline"], env)
    assert result.returncode == 2
    assert "cannot reach" in one_error_line(result)
    print(f"deploy without network: {took:.2f}s")
    assert took < 35, took  # loose: the bound is ~13 s plus Python's start, the box is shared


def test_the_first_call_to_aws_itself_keeps_the_tight_timeouts():
    from infra.aws.clients import EMULATOR_FIRST_CALL_CONFIG, FIRST_CALL_CONFIG, Clients, Target

    aws = Clients(Target("us-east-1", None)).first_call_sts.meta.config
    emulator = Clients(Target("us-east-1", "http://127.0.0.1:9")).first_call_sts.meta.config
    assert (aws.read_timeout, aws.connect_timeout) == (2, 2)
    assert aws.retries == FIRST_CALL_CONFIG.retries
    assert emulator.read_timeout == EMULATOR_FIRST_CALL_CONFIG.read_timeout == 6


# A moto_server that starts listening only once told to (a line on its stdin), as a slow one
# does.
SLOW_MOTO_SERVER = """import sys
sys.stdin.readline()
from moto.server import main
main(sys.argv[1:])
"""


def test_an_emulator_still_starting_is_waited_for(tmp_path, closed_port):
    """A recipe may start moto in the background and deploy at once: while a moto_server
    process names the endpoint's port, the command waits for it to listen. This one listens
    only after the command has said that it waits."""
    port = closed_port
    script = tmp_path / "moto_server"
    script.write_text(SLOW_MOTO_SERVER)
    env = user_env(tmp_path, region="us-east-1", credentials=True,
                   endpoint=f"http://127.0.0.1:{port}")
    moto = subprocess.Popen([sys.executable, str(script), "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    proc = subprocess.Popen([sys.executable, "-m", "infra", "plan", "--stack", "late"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        warning = proc.stderr.readline()
        moto.stdin.write("go\n")
        moto.stdin.close()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        moto.kill()
        moto.wait()
    assert f"moto_server (pid {moto.pid}) does not listen at http://127.0.0.1:{port} yet: " \
           "waiting up to 15 s" in warning, warning + stderr
    assert proc.returncode == 0, stderr
    assert "deploy of stack late would:" in stdout


def test_a_stopped_emulator_is_named_at_once(tmp_path, closed_port):
    """Nothing listens, nothing is starting: the emulator is stopped, and the command says so
    and how to start one, without botocore's retries or a word about the network."""
    port = closed_port
    env = user_env(tmp_path, region="us-east-1", credentials=True,
                   endpoint=f"http://127.0.0.1:{port}")
    result, took = timed_cli(["destroy", "--stack", "gone"], env)
    assert result.returncode == 2
    assert one_error_line(result) == (
        f"error: no emulator answers at http://127.0.0.1:{port}: start it "
        f"(`.venv/bin/moto_server -H 127.0.0.1 -p {port} &` or `make local-up`)")
    print(f"a stopped emulator named after {took:.2f}s")
    # ~2 s with Python's start-up on an idle 2-core box; loose: under make test's load, 10
    assert took < 15, took


def test_only_a_loopback_emulator_is_waited_for(closed_port):
    from infra.aws.clients import Clients, Target
    from infra.aws.preflight import emulator_started

    closed = Clients(Target(region="us-east-1", endpoint_url=f"http://127.0.0.1:{closed_port}"))
    started = time.monotonic()
    assert emulator_started(closed, wait=0.6) is False
    assert 0.6 <= time.monotonic() - started < 3
    for endpoint in (None, "https://ec2.us-east-1.amazonaws.com", "http://10.1.2.3:4566"):
        started = time.monotonic()
        assert emulator_started(Clients(Target(region="us-east-1", endpoint_url=endpoint)),
                                wait=5) is False
        assert time.monotonic() - started < 0.5  # no wait, no connection
