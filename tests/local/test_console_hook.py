"""A booted machine's console through the testbed's moto server, `python -m infra logs`, and
the doctor's BOOT_SCRIPT_FAILED.

The moto server runs with the hook (infra/local/motohook.py), as the testbed starts it; the
consoles are files where a machine writes its own (`machines/<id>/console.log` beside the
target health table). What comes back is held to EC2's shape: botocore's ec2 model says
GetConsoleOutputResult.Output (`output` on the wire) is base64 of the console, at most the
last 64 KB (the API reference: "Only the most recent 64 KB of console output is available"),
and absent when nothing was posted yet. botocore decodes it for the caller
(handlers.decode_console_output), so the wire is read here before it does.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from infra.aws import console_output
from infra.aws.emulator import FAKE_CREDENTIALS, emulator_clients
from infra.config import Settings, stack_filters
from infra.local import motohook, motoserver
from infra.local.processes import ProcessGroup

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ESC = "\x1b"

# As a booted machine's console has it (systemd forwards cloud-init's output with a prefix).
CI = "[ 5941.196655] cloud-init[146]: "
FAILED_CONSOLE = (
    f"[{ESC}[0;32m  OK  {ESC}[0m] Started {ESC}[0;1;39mcloud-final.service{ESC}[0m.\r\n"
    f"{CI}Cloud-init v. 22.4.2 running 'modules:final'\r\n"
    f"{CI}seed-lb user data: start 2026-01-01T00:00:00Z\r\n"
    f"{CI}seed-lb user data: 1/6 python3.11 (dnf)\r\n"
    f"{CI}seed-lb user data: 4/6 venv, pip install -r requirements.txt\r\n"
    f"{CI}Looking in links: http://10.213.0.5:40981/\r\n"
    f"[ 5941.5] systemd-journald[27]: a message of another unit\r\n"
    f"{CI}ERROR: Could not find a version that satisfies the requirement flask==31.3\r\n"
    f"{CI}ERROR: No matching distribution found for flask==31.3\r\n"
    f"[{ESC}[0;32m  OK  {ESC}[0m] Reached target multi-user.target.\r\n"
    f"{CI}seed-lb user data: FAILED at line 83: \"$APP_HOME/venv/bin/pip\" install (exit 1)\r\n"
    f"{CI}2026-01-01 00:00:05,321 - cc_scripts_user.py[WARNING]: Failed to run module\r\n"
    "\r\nDebian GNU/Linux 12 ip-10-0-1-5 console\r\n\r\nip-10-0-1-5 login: "
)
DONE_CONSOLE = ("seed-lb user data: start 2026-01-01T00:00:00Z\r\n"
                "seed-lb user data: done 2026-01-01T00:00:09Z, i-1 serves port 5000\r\n")


def test_clean_removes_escapes_and_carriage_returns():
    text = console_output.clean(f"{ESC}[0;32mOK{ESC}[0m\r\nnext\rline{ESC}]0;title\x07\x00")
    assert text == "OK\nnext\nline"


def test_a_boot_log_puts_the_verdict_and_the_error_first():
    log = console_output.BootLog("i-1", "running",
                                 lines=console_output.clean(FAILED_CONSOLE).split("\n"))
    assert log.failed
    assert log.verdict.startswith("seed-lb user data: FAILED at line 83")
    assert log.before_failure() == [
        "Looking in links: http://10.213.0.5:40981/",
        "ERROR: Could not find a version that satisfies the requirement flask==31.3",
        "ERROR: No matching distribution found for flask==31.3"]
    text = console_output.render([log], "s")
    assert text.index("FAILED at line 83") < text.index("No matching distribution") \
        < text.index("progress:") < text.index("the console's last")
    empty = console_output.render([console_output.BootLog("i-2", "pending")], "s")
    assert console_output.EMPTY_NOTE in empty


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The unchanged Stack deployed into a moto server started as the testbed starts it."""
    from infra.aws.stack import Stack

    runtime = tmp_path_factory.mktemp("consoles")
    processes = ProcessGroup(runtime)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    endpoint = motoserver.start(processes, env)
    try:
        state_dir = runtime / "state"
        clients = emulator_clients(endpoint, "us-east-1")  # they know the endpoint
        Stack(clients, Settings.fast(stack="cons", state_dir=str(state_dir)),
              progress=lambda _m: None).deploy()
        ids = sorted(i["InstanceId"] for r in clients.ec2.describe_instances(
            Filters=stack_filters("cons"))["Reservations"] for i in r["Instances"])
        yield {"endpoint": endpoint, "runtime": runtime, "clients": clients,
               "state_dir": state_dir, "ids": ids}
    finally:
        processes.stop_all()


def _console(deployed, instance_id: str, data: bytes | None) -> Path:
    path = deployed["runtime"] / "machines" / instance_id / "console.log"
    if data is None:
        path.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def _wire_output(clients, instance_id: str) -> tuple[str | None, dict]:
    """GetConsoleOutput's `output` element as sent, and the parsed (decoded) answer."""
    seen = {}

    def capture(response_dict, **_kwargs):
        seen["body"] = response_dict["body"]

    events = clients.ec2.meta.events
    events.register("before-parse.ec2.GetConsoleOutput", capture)
    try:
        answer = clients.ec2.get_console_output(InstanceId=instance_id, Latest=True)
    finally:
        events.unregister("before-parse.ec2.GetConsoleOutput", capture)
    root = ET.fromstring(seen["body"])
    node = next((n for n in root.iter() if n.tag.endswith("output")), None)
    return (node.text if node is not None else None), answer


def test_the_console_is_the_machines_base64_as_ec2_sends_it(deployed):
    iid = deployed["ids"][0]
    data = FAILED_CONSOLE.encode() + "é".encode()
    _console(deployed, iid, data)
    wire, answer = _wire_output(deployed["clients"], iid)
    assert base64.b64decode(wire, validate=True) == data
    assert answer["Output"] == data.decode()  # what botocore's handler makes of it
    assert answer["InstanceId"] == iid and answer["Timestamp"].year >= 2024


def test_only_the_last_64_kb(deployed):
    iid = deployed["ids"][0]
    data = b"".join(b"line %06d\n" % i for i in range(8000))  # 88 KB
    _console(deployed, iid, data)
    wire, _ = _wire_output(deployed["clients"], iid)
    assert base64.b64decode(wire) == data[-motohook.CONSOLE_LIMIT:]


def test_no_console_no_output_and_a_stranger_is_not_found(deployed):
    from botocore.exceptions import ClientError

    iid = deployed["ids"][1]
    _console(deployed, iid, None)
    wire, answer = _wire_output(deployed["clients"], iid)
    assert wire is None and "Output" not in answer
    with pytest.raises(ClientError) as caught:
        deployed["clients"].ec2.get_console_output(InstanceId="i-0000000000000dead")
    assert caught.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert motohook.console_file(str(deployed["runtime"] / "t.json"), "../../etc") is None


def _cli(deployed, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS, AWS_REGION="us-east-1")
    return subprocess.run([sys.executable, "-m", "infra", *argv], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def test_logs_shows_the_failure_first_then_the_pip_error(deployed):
    """`python -m infra logs` finds the testbed's moto server through the state file."""
    failed, fine = deployed["ids"]
    _console(deployed, failed, FAILED_CONSOLE.encode())
    _console(deployed, fine, DONE_CONSOLE.encode())
    result = _cli(deployed, "logs", "--stack", "cons", "--state-dir", str(deployed["state_dir"]))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    block = out[out.index(f"instance {failed}"):]
    assert block.splitlines()[1].strip().startswith("seed-lb user data: FAILED at line 83")
    assert "No matching distribution found for flask==31.3" in block
    assert ESC not in out and "\r" not in out
    assert f"instance {fine}" in out and "seed-lb user data: done" in out
    _console(deployed, failed, None)
    result = _cli(deployed, "logs", "--stack", "cons", "--state-dir", str(deployed["state_dir"]))
    assert result.returncode == 0 and console_output.EMPTY_NOTE in result.stdout


def _doctor(deployed) -> list[dict]:
    env_endpoint = deployed["endpoint"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS, AWS_REGION="us-east-1", AWS_ENDPOINT_URL=env_endpoint)
    result = subprocess.run([sys.executable, "-m", "infra", "doctor", "--stack", "cons",
                             "--json"], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=120)
    return json.loads(result.stdout)["findings"]


def test_the_doctor_quotes_a_failed_boot_of_an_unhealthy_target(deployed):
    clients = deployed["clients"]
    tg = clients.elbv2.describe_target_groups(Names=["cons-tg"])["TargetGroups"][0]
    failed, fine = deployed["ids"]
    unhealthy = {"State": "unhealthy", "Reason": "Target.FailedHealthChecks",
                 "Description": "Health checks failed"}
    motohook.write_table(motoserver.health_table(deployed["runtime"]), {tg["TargetGroupArn"]: {
        motohook.target_key(failed, 5000): unhealthy,
        motohook.target_key(fine, 5000): {"State": "healthy"}}})
    _console(deployed, failed, FAILED_CONSOLE.encode())
    _console(deployed, fine, FAILED_CONSOLE.encode())  # healthy: its console is not read
    findings = [f for f in _doctor(deployed) if f["code"] == "BOOT_SCRIPT_FAILED"]
    assert len(findings) == 1 and findings[0]["severity"] == "error"
    assert failed in findings[0]["message"] and fine not in findings[0]["message"]
    assert "FAILED at line 83" in findings[0]["message"]
    assert "flask==31.3" in findings[0]["message"] and "make logs" in findings[0]["fix"]
    _console(deployed, failed, DONE_CONSOLE.encode())  # unhealthy, but the boot went fine
    assert not [f for f in _doctor(deployed) if f["code"] == "BOOT_SCRIPT_FAILED"]
