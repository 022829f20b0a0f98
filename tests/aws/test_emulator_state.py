"""status, doctor and destroy find a stack that deploy put into an emulator by its state file:
the endpoint, the region and fake keys, in a fresh shell that sets none of them. And an
emulator that no longer answers is named at once, with how to start one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from provision_helpers import ROOT, one_error_line

from infra.aws import emulator

pytestmark = pytest.mark.integration


def fresh_shell(tmp_path) -> dict[str, str]:
    """No AWS_* at all, no ~/.aws: what a new terminal has."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT)}


def write_state(where, stack: str, endpoint: str, **extra) -> None:
    (where / ".state").mkdir(exist_ok=True)
    (where / ".state" / f"{stack}.json").write_text(json.dumps(
        {"stack": stack, "emulator": True, "endpoint_url": endpoint, "region": "eu-west-1",
         "lb_dns": f"{stack}-alb-1.eu-west-1.elb.amazonaws.com", **extra}))


def infra(tmp_path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra", *args], cwd=tmp_path,
                          env=env or fresh_shell(tmp_path), capture_output=True, text=True,
                          timeout=120)


def test_status_reads_the_stack_where_its_state_says_with_fake_keys(tmp_path,
                                                                     module_moto_server):
    write_state(tmp_path, "moto-stack", module_moto_server)
    done = infra(tmp_path, "status", "--stack", "moto-stack")
    assert done.returncode == 0, done.stderr
    assert f"region eu-west-1 at {module_moto_server}" in done.stdout
    assert "nothing deployed" in done.stdout  # moto answered, with the fake keys


def test_the_doctor_finds_the_local_testbeds_stack_by_its_load_balancer(tmp_path,
                                                                        module_moto_server):
    write_state(tmp_path, "bed", module_moto_server,
                grade_endpoints={"lb": "127.0.0.1:8080", "instances": []})
    done = infra(tmp_path, "doctor", "--lb", "127.0.0.1:8080")
    # moto answered (nothing is deployed there): the doctor looked for stack bed's tags
    assert "no load balancer tagged" in done.stderr and "Stack=bed" in done.stderr, done.stderr
    assert "no AWS region" not in done.stderr and "no AWS credentials" not in done.stderr


def test_the_default_stack_without_credentials_is_the_one_emulator_that_answers(
        tmp_path, module_moto_server, closed_port):
    write_state(tmp_path, "seed-lb-local", module_moto_server,
                grade_endpoints={"lb": "127.0.0.1:8080", "instances": []})
    write_state(tmp_path, "gone", f"http://127.0.0.1:{closed_port}")
    done = infra(tmp_path, "status")
    assert done.returncode == 0, done.stderr
    assert "no AWS credentials and no stack seed-lb here: stack seed-lb-local" in done.stderr
    assert "stack seed-lb-local in account 123456789012, region eu-west-1" in done.stdout


def test_with_credentials_the_default_stack_stays_on_aws(tmp_path, module_moto_server):
    write_state(tmp_path, "seed-lb-local", module_moto_server)
    env = fresh_shell(tmp_path)
    env.update(AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="x")
    found = _resolve(env, tmp_path, "seed-lb")
    assert found == "None"


def test_an_endpoint_in_the_environment_is_the_users_choice(tmp_path, module_moto_server):
    """AWS_ENDPOINT_URL set: the user's settings and keys, whatever the state files say."""
    write_state(tmp_path, "bed", module_moto_server)
    env = fresh_shell(tmp_path)
    env["AWS_ENDPOINT_URL"] = module_moto_server
    assert _resolve(env, tmp_path, "bed") == "None"


def _resolve(env, cwd, stack: str) -> str:
    code = ("import sys; from infra.aws.emulator import deployed_in_emulator as d\n"
            "r = d(sys.argv[1], '.state', default_stack='seed-lb')\n"
            "print(r and f'{r.stack} {r.endpoint} {r.region}')")
    return subprocess.run([sys.executable, "-c", code, stack], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_destroy_in_a_stopped_emulator_says_so_at_once(tmp_path, closed_port):
    port = closed_port
    write_state(tmp_path, "seed-lb", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    done = infra(tmp_path, "destroy")
    took = time.monotonic() - started
    assert done.returncode == 2
    line = one_error_line(done)
    assert line.startswith(f"error: {emulator.not_answering(f'http://127.0.0.1:{port}')}. "
                           ".state/seed-lb.json says stack seed-lb was deployed there"), line
    assert "`rm .state/seed-lb.json`" in line and "network" not in line
    print(f"destroy in a stopped emulator: {took:.2f}s")
    assert took < 15, took  # ~2 s on an idle box; loose: under make test's load, 10


def test_destroy_leaves_the_local_testbed_to_local_down(tmp_path, module_moto_server):
    write_state(tmp_path, "seed-lb-local", module_moto_server,
                grade_endpoints={"lb": "127.0.0.1:8080", "instances": []})
    done = infra(tmp_path, "destroy", "--stack", "seed-lb-local")
    assert done.returncode == 2
    assert "`make local-down STACK=seed-lb-local`" in one_error_line(done)
