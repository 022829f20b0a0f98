"""`python -m infra local ACTION`: the testbed's command line (make test-local, local-up, ...)."""

from __future__ import annotations

import argparse
import time

from infra.console import Progress
from infra.errors import UserError
from infra.local.testbed import (
    DEFAULT_LB_PORT,
    DEFAULT_REGION,
    DEFAULT_STACK,
    FIRST_ADDRESS,
    RUNTIME_ROOT,
    Testbed,
    sigterm_as_interrupt,
)

LOCAL_HELP = """\
the whole system on this machine: a moto server as the AWS control plane, provisioned by the
same code as `make deploy-aws`; one `python -m app` process per instance (127.0.0.11:5000,
127.0.0.12:5000, ...) and Caddy as the load balancer, both configured from what the control
plane reports.

  up                  start it and leave it running; prints the load balancer's address
  status              processes, ports, and target health as Caddy and as moto see it
  down                stop everything, delete the stack in moto (also after a killed run)
  test                up, grade, failover drill, down: a PASS/FAIL table (make test-local)
  kill-instance ID    crash one instance's app (SIGKILL)
  start-instance ID   start it again, with the same seed file
"""


def _testbed(args, mode: str = "up", progress=None) -> Testbed:
    return Testbed(
        args.stack,
        lb_port=args.lb_port,
        runtime_dir=args.runtime_dir,
        first_address=args.first_address,
        caddy=args.caddy,
        region=args.region,
        progress=progress,
        mode=mode,
    )


def cmd_up(args) -> int:
    testbed = _testbed(args, "up", Progress())
    with sigterm_as_interrupt():
        testbed.up()
    lb = testbed.lb_address
    print(f"\nlocal load balancer: http://{lb}  (stands in for the ALB's listener)")
    for iid, address in testbed.instances.items():
        print(f"  instance {iid}: http://{address}")
    print(f"\ncheck it:  make grade LB={lb}")
    print("see it:    make local-status")
    print("stop it:   make local-down")
    return 0


def cmd_status(args) -> int:
    status = _testbed(args).status()
    print(f"stack {status['stack']} ({status['mode']}), control plane {status['endpoint']}: "
          f"{'answering' if status['moto'] else 'NOT answering'}")
    print(f"load balancer http://{status['lb']}: "
          f"{'listening' if status['lb_listening'] else 'NOT listening'} "
          f"(Caddy admin API {status['admin']})")
    print("\nprocesses:")
    for p in status["processes"]:
        print(f"  {p['name']:<28} pid {p['pid']:<8} {'running' if p['running'] else 'GONE'}"
              f"   log {p['log']}")
    print("\ninstances:              address              app      /health  moto     Caddy")
    for inst in status["instances"]:
        iid = inst["id"]
        print(f"  {iid:<22} {inst['address']:<20} "
              f"{'running' if inst['running'] else 'stopped':<8} "
              f"{'200' if inst['health'] else 'down':<8} "
              f"{status['control_plane'].get(iid, 'not registered'):<8} "
              f"{status['caddy'].get(iid, 'not in rotation')}")
    synced = status["supervisor"].get("synced_at")
    if synced:
        print(f"\nsupervisor: last synced the proxy with the control plane "
              f"{time.time() - synced:.1f}s ago")
    print("\nmoto reports the target health it was told (it never probes); Caddy's column is "
          "what its active health checks found.")
    return 0


def cmd_down(args) -> int:
    progress = Progress()
    testbed = _testbed(args, progress=progress)
    if testbed.meta is None and not testbed.processes.records():
        print(f"no local testbed for stack {args.stack}: nothing to stop")
        return 0
    with sigterm_as_interrupt():
        report = testbed.down()
    progress(f"stopped: {', '.join(report['stopped']) or 'nothing was running'}")
    if report["destroyed"]:
        progress("stack destroyed in moto")
    elif report["interrupted"]:
        progress("interrupted: the stack was not destroyed, but moto is stopped: its resources "
                 "went with it")
    else:
        progress("moto was not running: its resources went with it")
    if report["left"]:
        pids = " ".join(str(pid) for pid in report["left_pids"])
        raise UserError(f"still running after down: {', '.join(report['left'])}. Run "
                        f"{testbed.down_command()} again, or `kill -9 {pids}`", exit_code=1)
    if report["listening"]:
        raise UserError(f"still listening after down: {', '.join(report['listening'])}",
                        exit_code=1)
    return 0


def cmd_kill_instance(args) -> int:
    _testbed(args).kill_instance(args.instance_id)
    print(f"killed instance {args.instance_id}'s app; Caddy takes it out of rotation after "
          "its failed health checks (`make local-status`)")
    return 0


def cmd_start_instance(args) -> int:
    testbed = _testbed(args)
    testbed.start_instance(args.instance_id)
    print(f"instance {args.instance_id} is up again at {testbed.instances[args.instance_id]}; "
          "Caddy puts it back after its passing health checks")
    return 0


def cmd_test(args) -> int:
    from infra.local.testrun import run

    return run(lambda progress: _testbed(args, "test", progress))


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "local",
        help="the whole system on this machine (moto + app processes + Caddy)",
        description=LOCAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("testbed")
    group.add_argument("--stack", default=DEFAULT_STACK,
                       help=f"stack name in the local moto server (default: {DEFAULT_STACK})")
    group.add_argument("--region", default=DEFAULT_REGION,
                       help=f"region inside moto (default: {DEFAULT_REGION})")
    group.add_argument("--lb-port", type=int, default=DEFAULT_LB_PORT,
                       help="local port that stands in for the listener's port "
                            f"(default: {DEFAULT_LB_PORT})")
    group.add_argument("--first-address", default=FIRST_ADDRESS,
                       help=f"loopback address of the first instance, then +1 each "
                            f"(default: {FIRST_ADDRESS})")
    group.add_argument("--caddy", default=None,
                       help="path to the caddy binary (default: .venv/bin/caddy, then PATH)")
    group.add_argument("--runtime-dir", default=None,
                       help=f"pid files, logs and seed files (default: {RUNTIME_ROOT}/<stack>)")
    sub = parser.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    for name, func, text in [
        ("up", cmd_up, "start the testbed and leave it running"),
        ("status", cmd_status, "processes, ports and target health"),
        ("down", cmd_down, "stop everything and delete the stack in moto"),
        ("test", cmd_test, "up, grade, failover drill, down (make test-local)"),
    ]:
        sub.add_parser(name, parents=[options], help=text, description=text).set_defaults(
            func=func)
    for name, func, text in [
        ("kill-instance", cmd_kill_instance, "crash one instance's app (SIGKILL)"),
        ("start-instance", cmd_start_instance, "start an instance's app again (same seed file)"),
    ]:
        p = sub.add_parser(name, parents=[options], help=text, description=text)
        p.add_argument("instance_id", metavar="ID", help="the instance id, as `status` lists it")
        p.set_defaults(func=func)
