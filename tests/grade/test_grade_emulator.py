"""README's no-account recipe, then `make grade LB=<the name deploy printed>`: that name, and
the instances' public IPs, were made up by moto (54.214.x.x are real AWS addresses, some
stranger's). The grader must say so in one line and send nothing, and give the path that
works. In this process, under the suite's guard (tests/offmachine.py): a lookup of the name
or a connection to any of those IPs fails the test."""

from __future__ import annotations

import json

import pytest

from infra.cli import main
from infra.local.runtime import DEFAULT_LB_PORT

LOCAL_LB = f"127.0.0.1:{DEFAULT_LB_PORT}"  # where `make local-up` serves the load balancer

pytestmark = [pytest.mark.integration]


@pytest.fixture
def moto_stack(tmp_path, moto_server, monkeypatch, capsys):
    """A stack deployed by the real `deploy` into a moto server: its state file's folder."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    state_dir = tmp_path / ".state"
    code = main(["deploy", "--stack", "emu", "--state-dir", str(state_dir),
                 "--no-wait-healthy"])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    # the grader's own belt (loopback only) is taken off: the braces must hold alone
    monkeypatch.delenv("SEEDLB_LOOPBACK_ONLY")
    return state_dir, json.loads((state_dir / "emu.json").read_text())


def grade_line(capsys, *args) -> tuple[int, str]:
    code = main(["grade", *args])
    out, err = capsys.readouterr()
    return code, out + err


def test_grading_the_name_moto_made_sends_nothing_and_says_what_works(moto_stack, capsys):
    state_dir, state = moto_stack
    assert state["emulator"] is True and state["lb_dns"].endswith(".elb.amazonaws.com")
    code, text = grade_line(capsys, state["lb_dns"], "--state-dir", str(state_dir),
                            "--stack", "emu")
    assert code == 2
    assert text.count("\n") == 1, text  # one line
    assert f"error: {state['lb_dns']} exists only in the emulator" in text
    assert "nothing was sent to it" in text
    assert f"to grade on this machine: make local-up, then make grade LB={LOCAL_LB}" in text
    assert "DNS" not in text.replace(state["lb_dns"], "")  # no "wait for DNS"


def test_an_instance_ip_moto_made_is_refused_too(moto_stack, capsys, serve):
    import grade_servers as apps

    state_dir, state = moto_stack
    made_up = next(i["public_ip"] for i in state["instances"] if i.get("public_ip"))
    lb = serve(apps.correct("i-0"))
    code, text = grade_line(capsys, str(lb), "--instances", made_up, "--state-dir",
                            str(state_dir))
    assert code == 2 and f"error: {made_up} exists only in the emulator" in text


def test_a_running_testbed_is_named_instead(moto_stack, capsys):
    state_dir, state = moto_stack
    (state_dir / "seed-lb-local.json").write_text(json.dumps(
        {"emulator": True, "grade_endpoints": {"lb": "127.0.0.1:8180", "instances": []}}))
    code, text = grade_line(capsys, state["lb_dns"], "--state-dir", str(state_dir))
    assert code == 2 and "the local testbed runs here: make grade LB=127.0.0.1:8180" in text
    assert "local-up" not in text


def test_the_local_testbeds_default_port_is_the_one_named():
    from infra.grade.address import LOCAL_LB as named  # the grader cannot import the testbed

    assert named == LOCAL_LB
