"""Each way the testbed can fail to start says why in one message and leaves nothing behind:
no process, no open port, no pid file. Also Ctrl-C half-way, and a run that was killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from signals import sigint_default

from infra.errors import UserError
from infra.local.processes import PROJECT_ROOT, alive, listened_by, listening, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]


def assert_nothing_left(bed, pids=()):
    assert bed.processes.records() == []
    assert bed.meta is None
    for pid in pids:
        assert not alive(pid), pid


def test_missing_proxy_binary_is_named_before_anything_starts(tmp_path, new_testbed):
    bed = new_testbed(caddy=str(tmp_path / "no-such-caddy"))
    with pytest.raises(UserError, match="no Caddy binary at .*no-such-caddy"):
        bed.up()
    assert_nothing_left(bed)


def test_load_balancer_port_in_use(tmp_path, new_testbed):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        bed = new_testbed(lb_port=port)
        with pytest.raises(UserError, match=f"127.0.0.1:{port} is already in use.*--lb-port"
                           ) as caught:
            bed.up()
    assert_nothing_left(bed)
    if sys.platform.startswith("linux"):  # ss names the program that holds it, in words
        assert f"(pid {os.getpid()}: " in str(caught.value), caught.value
        assert "users:" not in str(caught.value) and "((" not in str(caught.value)


def test_instance_address_in_use_stops_what_was_started(tmp_path, new_testbed):
    bed = new_testbed()
    with socket.socket() as busy:
        # SO_REUSEADDR, as every server sets it: the port is held for the testbed until the
        # test ends (tests/ports.py), and only a listener shares it with that hold.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((bed.first_address, bed.instance_port))
        busy.listen()
        with pytest.raises(UserError, match=f"{bed.first_address}:{bed.instance_port} is "
                                            "already in use"):
            bed.up()
    assert_nothing_left(bed)


def test_instance_that_crashes_at_start_up_shows_its_log(tmp_path, new_testbed):
    # A real start-up crash of the real app: it refuses a zero worker count.
    bed = new_testbed(app_env={"APP_WORKERS": "0"})
    with pytest.raises(UserError) as caught:
        bed.up()
    message = str(caught.value)
    assert "exited with code" in message and "at start-up" in message
    assert "APP_WORKERS" in message  # the tail of the app's own log
    assert_nothing_left(bed)
    assert not (bed.state_dir / f"{bed.stack}.json").exists()


def _cli(bed, *action):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return [
        sys.executable, "-m", "infra", "local", *action, "--stack", bed.stack,
        "--lb-port", str(bed.lb_port), "--first-address", bed.first_address,
        "--runtime-dir", str(bed.runtime_dir),
    ], env  # fmt: skip


def test_ctrl_c_during_up_cleans_up(tmp_path, new_testbed):
    bed = new_testbed()
    argv, env = _cli(bed, "up")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        # The supervisor starts once moto answers, just before the provisioning: interrupt
        # there, with moto and the supervisor to stop.
        supervisor_pid = bed.processes.pid_dir / "supervisor.json"
        assert wait_until(lambda: supervisor_pid.exists() or proc.poll() is not None, 30, 0.05)
        started = [r.pid for r in bed.processes.records()]
        assert {r.name for r in bed.processes.records()} == {"moto", "supervisor"}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    assert "Traceback" not in err
    assert_nothing_left(bed, started)


def test_down_after_a_killed_run_and_a_stale_run_is_replaced(tmp_path, new_testbed):
    first = new_testbed(mode="test")
    first.up()
    old = {r.name: r.pid for r in first.processes.records()}
    old_addresses = [first.lb_address, *first.instances.values()]
    # The `local test` that owned it was killed: its pid is gone, its processes are not.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    meta = json.loads(first.meta_path.read_text())
    meta["owner_pid"] = dead.pid
    first.meta_path.write_text(json.dumps(meta))

    second = new_testbed(mode="test", lb_port=first.lb_port,
                          first_address=first.first_address,
                          instance_port=first.instance_port, stack=first.stack)
    messages: list[str] = []
    second.progress = messages.append
    second.up()
    try:
        assert any("previous run was killed" in m for m in messages), messages
        for pid in old.values():
            assert not alive(pid)
        assert set(second.instances).isdisjoint(set(first_ids := list(meta["instances"])))
        assert first_ids
    finally:
        # A fresh object knows nothing but the pid files: as `make local-down` after a kill.
        report = new_testbed(stack=first.stack).down()
    assert report["destroyed"]
    assert len(report["stopped"]) == 5
    for address in old_addresses:  # by the old processes (a freed port may be another's)
        host, port = address.rsplit(":", 1)
        assert not listened_by(host, int(port), set(old.values()))
    assert_nothing_left(second)


def test_a_testbed_left_running_by_up_is_kept_and_its_supervisor_follows_it(
    tmp_path, new_testbed
):
    first = new_testbed()  # mode "up": left running on purpose
    first.up()
    again = new_testbed(stack=first.stack)
    with pytest.raises(UserError, match="still running.*nothing was changed.*local down "
                                        f"--stack {first.stack}"):
        again.up()
    assert first.status().load_balancer_listening
    # The supervisor goes away by itself once the testbed's runtime file does.
    supervisor = first.processes.record("supervisor")
    moved = first.meta_path.with_suffix(".moved")
    first.meta_path.rename(moved)
    try:
        assert wait_until(lambda: not alive(supervisor.pid), 5.0, 0.1)
    finally:
        moved.rename(first.meta_path)
    first.down()
    assert_nothing_left(first)


def test_cli_status_and_down_without_a_testbed(tmp_path, new_testbed):
    bed = new_testbed()
    argv, env = _cli(bed, "down")
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "nothing to stop" in done.stdout
    argv, env = _cli(bed, "status")
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "error: no local testbed" in done.stderr and "make local-up" in done.stderr
    assert not Path(tmp_path / ".state").exists()


def test_a_shut_front_keeps_its_port_for_the_load_balancer(new_testbed):
    """No listener: Caddy lets go of the load balancer's port (a client is refused, as on
    AWS). Meanwhile the port must stay the testbed's: if it were free, another program, or
    the local end of any outgoing connection, could take it, and the front would never open
    again. The port here is not held by the test (tests/ports.py), as in `local faults`."""
    from infra.local.processes import free_port

    bed = new_testbed(lb_port=free_port())
    bed.up()
    elbv2 = bed.clients().elbv2
    view = bed.read_stack()
    listener = elbv2.describe_listeners(LoadBalancerArn=view.lb_arn)["Listeners"][0]
    elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
    host, port = bed.lb_address.rsplit(":", 1)
    assert wait_until(lambda: not listening(host, int(port)), 15, 0.2)
    with socket.socket() as stranger, pytest.raises(OSError, match="in use"):
        stranger.bind((host, int(port)))
    elbv2.create_listener(LoadBalancerArn=view.lb_arn, Protocol="HTTP", Port=80,
                          DefaultActions=[{"Type": "forward",
                                           "TargetGroupArn": view.target_group_arn}])
    assert wait_until(lambda: listening(host, int(port)), 15, 0.2)
