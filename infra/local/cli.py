"""`python -m infra local ACTION`: the testbed's command line (make test-local, local-up, ...)."""

from __future__ import annotations

import argparse
import json

from infra.console import Progress
from infra.errors import UserError
from infra.local.interrupts import Interrupts, sigterm_as_interrupt
from infra.local.runtime import (
    DEFAULT_LB_PORT,
    DEFAULT_REGION,
    DEFAULT_TESTBED_STACK,
    FIRST_ADDRESS,
    RUNTIME_ROOT,
)
from infra.local.testbed import Testbed

DEFAULT_LANES = 9  # testbeds side by side in `local faults`: the two shortest share one

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
  break FAULT         make one of the seed FAQ's mistakes on the running testbed (--list)
  fix FAULT           undo it
  faults [FAULT...]   every fault on testbeds of their own: break, grade FAIL, doctor names
                      it, fix, grade PASS; a PASS/FAIL table (make test-faults)

The testbed is as strict as AWS: the supervisor applies the stack's security groups, scheme,
listener and target ports to the local path, and DescribeTargetHealth in its moto server
reports real health checks (docs/testbed.md).
"""


def _testbed(args, mode: str = "up", progress=None, interrupts=None) -> Testbed:
    return Testbed(
        args.stack,
        lb_port=args.lb_port,
        runtime_dir=args.runtime_dir,
        first_address=args.first_address,
        caddy=args.caddy,
        region=args.region,
        progress=progress,
        mode=mode,
        machines=getattr(args, "machines", False),
        interrupts=interrupts,
    )


def cmd_up(args) -> int:
    testbed = _testbed(args, "up", Progress())
    with sigterm_as_interrupt(testbed.interrupts):
        testbed.up()
    lb = testbed.lb_address
    meta = testbed.meta
    print(f"\nlocal load balancer: http://{lb}  (stands in for the ALB's listener)")
    for iid, address in testbed.instances.items():
        print(f"  instance {iid}: http://{address}")
    print(f"control plane: a moto server at {meta.endpoint} (region {meta.region}, any keys; "
          f"the stack's state: .state/{testbed.stack}.json)")
    print(f"\ncheck it:  make grade LB={lb}")
    print(f"doctor:    {testbed.commands.doctor()}")
    print(f"see it:    {testbed.commands.local('status')}")
    print(f"stop it:   {testbed.commands.local('down')}")
    return 0


def cmd_status(args) -> int:
    status = _testbed(args).status()
    print(json.dumps(status.to_json(), indent=2) if args.json else status.render())
    return 0


def cmd_down(args) -> int:
    from infra.local.faults.ownership import FaultsRun, run_root

    progress = Progress()
    testbed = _testbed(args, progress=progress)
    drills = FaultsRun(run_root(args.stack), args.stack, interrupts=testbed.interrupts)
    had_drills = drills.active()  # `local faults` with the same --stack, running or killed
    if had_drills:
        with sigterm_as_interrupt(testbed.interrupts):
            stopped = drills.stop_from_outside(progress)
        progress(f"local faults: stopped {', '.join(stopped) or 'nothing was running'}")
        left = drills.records()
        if left:
            raise UserError(f"still running after down: "
                            f"{', '.join(r.describe() for r in left)}. Run "
                            f"{testbed.commands.down()} again, or "
                            f"`kill -9 {' '.join(str(r.pid) for r in left)}`", exit_code=1)
    if testbed.meta is None and not testbed.processes.records():
        if not had_drills:
            print(f"no local testbed for stack {args.stack}: nothing to stop")
        return 0
    with sigterm_as_interrupt(testbed.interrupts):
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
                        f"{testbed.commands.down()} again, or `kill -9 {pids}`", exit_code=1)
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


def cmd_test_boot(args) -> int:
    from infra.local.machines.testboot import run

    args.machines = True

    return run(lambda progress: _testbed(args, "test", progress))


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
    group.add_argument("--stack", default=DEFAULT_TESTBED_STACK,
                       help="stack name in the local moto server "
                            f"(default: {DEFAULT_TESTBED_STACK})")
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
    group.add_argument("--machines", action="store_true",
                       help="boot each instance as a systemd-nspawn machine from its user data "
                            "(root, Linux; docs/testbed.md) instead of an app process")
    sub = parser.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    for name, func, text in [
        ("up", cmd_up, "start the testbed and leave it running"),
        ("down", cmd_down, "stop everything and delete the stack in moto"),
        ("test", cmd_test, "up, grade, failover drill, down (make test-local)"),
    ]:
        sub.add_parser(name, parents=[options], help=text, description=text).set_defaults(
            func=func)
    text = "processes, ports and target health"
    status = sub.add_parser("status", parents=[options], help=text, description=text)
    status.add_argument("--json", action="store_true",
                        help="print one JSON object: endpoint, load_balancer, instances (id, "
                             "address, process, health in moto), last_sync")
    status.set_defaults(func=cmd_status)
    _register_faults(sub, options)
    text = ("make test-boot: the instances as booted machines (cloud-init runs the user data): "
            "up, grade, failover drill (systemd restarts the app), a closed security group, "
            "down; skipped where this machine cannot boot machines")
    p = sub.add_parser("test-boot", parents=[options], help=text, description=text)
    p.set_defaults(func=cmd_test_boot)
    for name, func, text in [
        ("kill-instance", cmd_kill_instance, "crash one instance's app (SIGKILL)"),
        ("start-instance", cmd_start_instance, "start an instance's app again (same seed file)"),
    ]:
        p = sub.add_parser(name, parents=[options], help=text, description=text)
        p.add_argument("instance_id", metavar="ID", help="the instance id, as `status` lists it")
        p.set_defaults(func=func)


# --- fault drills ---------------------------------------------------------------------------
def cmd_break(args) -> int:
    from infra.local import faults

    if args.list:
        print("faults (make local-break FAULT=NAME; undo with make local-fix FAULT=NAME):\n")
        print(faults.listing())
        return 0
    if not args.fault:
        raise UserError("name a fault to break, e.g. `make local-break FAULT=app-sg-closed`; "
                        "`make local-break FAULT=--list` lists them", exit_code=2)
    fault = faults.get(args.fault)
    testbed = _testbed(args)
    fault.apply(faults.FaultSite(testbed))
    lb = testbed.lb_address
    grade = f"grade {fault.grade}" + (f" ({fault.why_grade})" if fault.why_grade else "")
    print(f"broke {fault.name}: {fault.does}\n"
          f"  stands for: {fault.faq}\n"
          f"  expect, within ~{faults.effect_window(testbed):.0f}s: {grade}; the doctor names "
          f"{fault.code}\n"
          f"  see it:  {testbed.commands.local('status')}\n"
          f"           make grade LB={lb}\n"
          f"           {testbed.commands.doctor()}\n"
          f"  undo it: {testbed.commands.local('fix', fault.name)}")
    return 0


def cmd_fix(args) -> int:
    from infra.local import faults

    fault = faults.get(args.fault)
    testbed = _testbed(args)
    site = faults.FaultSite(testbed)
    if not fault.broken(site):
        print(f"{fault.name} was not broken: nothing to undo ({testbed.commands.local('status')} "
              "shows the testbed)")
        return 0
    fault.undo(site)
    print(f"fixed {fault.name}; the targets are healthy again within "
          f"~{faults.effect_window(testbed):.0f}s (`{testbed.commands.local('status')}`)")
    return 0


def cmd_faults(args) -> int:
    from infra.local import faults

    names = args.fault or list(faults.FAULTS)
    for name in names:
        faults.get(name)
    progress = Progress()
    # The defaults are those of `local up`'s own testbed: the lanes keep clear of it.
    lb_port = None if args.lb_port == DEFAULT_LB_PORT else args.lb_port
    first = None if args.first_address == FIRST_ADDRESS else args.first_address
    stop = _testbed(args).commands.down()
    with sigterm_as_interrupt(Interrupts()) as interrupts:
        rows, info = faults.run_all(
            names, stack=args.stack, lanes_wanted=args.lanes, lb_port=lb_port,
            first_address=first, region=args.region, caddy=args.caddy, say=progress,
            stop_hint=stop, interrupts=interrupts)
    print(faults.render(rows, progress.elapsed), flush=True)
    ups = sorted(info["up_seconds"].values())
    if ups:
        print(f"{len(ups)} testbeds on one moto server, up in {ups[0]:.1f}-{ups[-1]:.1f}s")
    return 0 if rows and all(r.passed for r in rows) else 1


def _register_faults(sub, options) -> None:
    from infra.local.faults import FAULTS

    names = ", ".join(FAULTS)
    text = "make one of the seed FAQ's mistakes on the running testbed, through boto3"
    p = sub.add_parser("break", parents=[options], help=text, description=text,
                       epilog=f"faults: {names}")
    p.add_argument("fault", nargs="?", metavar="FAULT", help="the fault (see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the faults, each with the FAQ entry it stands for")
    p.set_defaults(func=cmd_break)
    text = "undo a fault made with `local break`"
    p = sub.add_parser("fix", parents=[options], help=text, description=text,
                       epilog=f"faults: {names}")
    p.add_argument("fault", metavar="FAULT")
    p.set_defaults(func=cmd_fix)
    text = ("every fault against testbeds of its own, side by side: break, wait for the effect, "
            "grade FAIL, doctor names it, fix, grade PASS; a PASS/FAIL table (make test-faults)")
    p = sub.add_parser("faults", parents=[options], help=text, description=text,
                       epilog="Lanes use --lb-port, +1, ... and --first-address, +8, ... when "
                              "given (not the defaults of `local up`'s testbed), else free ports "
                              "and a random loopback block; their stacks are <stack>-f1, -f2, ... "
                              "One run per --stack at a time; `local down` with the same "
                              "--stack stops it.")
    p.add_argument("fault", nargs="*", metavar="FAULT", help=f"only these (default: all: {names})")
    p.add_argument("--lanes", type=int, default=DEFAULT_LANES,
                   help=f"testbeds side by side (default: {DEFAULT_LANES})")
    p.set_defaults(func=cmd_faults)
