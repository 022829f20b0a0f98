"""`python -m infra deploy|destroy|plan|status`: the stack on AWS, LocalStack or a moto server.

The backend is configuration only: --backend, AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION.
Before any client is built, each command checks what needs no AWS call: the settings, the
region, and that credentials exist; each then says what went wrong in one line.
"""

from __future__ import annotations

import argparse
import functools

from infra.aws import console_output, emulator, failures, preflight, pricing
from infra.aws.clients import Clients, resolve_target
from infra.aws.localstack import DEFAULT_PORT
from infra.config import DEFAULT_STACK, STATE_DIR, Settings
from infra.console import Progress
from infra.errors import UserError
from infra.state import state_path

EXAMPLES = """examples:
  make deploy-aws                                  # real AWS, your default profile/region
  AWS_ENDPOINT_URL=http://127.0.0.1:5001 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing \\
    AWS_SECRET_ACCESS_KEY=testing make deploy-aws        # a moto server listening there
  .venv/bin/python -m infra deploy --stack demo --count 3 --public-access any
  .venv/bin/python -m infra destroy --stack demo
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    deploy = subparsers.add_parser(
        "deploy", parents=[common], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="create or converge the stack: VPC, security groups, instances, ALB",
        description="Create the stack, or converge it to the settings (re-running is safe: "
        "resources are found by their tags). Prints its plan first, then acts unattended.",
    )
    _stack_options(deploy)
    deploy.set_defaults(func=cmd_deploy)

    plan = subparsers.add_parser(
        "plan", parents=[common], help="print what deploy would create or change; changes nothing"
    )
    _stack_options(plan)
    plan.set_defaults(func=cmd_plan)

    status = subparsers.add_parser(
        "status", parents=[common], help="the stack's resources, target health and DNS name"
    )
    status.add_argument("--state-dir", default=STATE_DIR, help=argparse.SUPPRESS)
    status.set_defaults(func=cmd_status)

    destroy = subparsers.add_parser(
        "destroy", parents=[common],
        help="delete everything tagged with the stack, in dependency order, and wait",
    )
    destroy.add_argument("--state-dir", default=STATE_DIR,
                         help=f"where the state file lives (default: {STATE_DIR})")
    destroy.set_defaults(func=cmd_destroy)

    localstack = subparsers.add_parser(
        "localstack", help="start or stop LocalStack's free code as a plain process on "
        "127.0.0.1 (make localstack-up / localstack-down)",
        description="LocalStack's community code, run from .venv-localstack without Docker, "
        "bound to 127.0.0.1. `up` returns once it answers; `down` stops it (SIGKILL after "
        "10 s). See docs/aws.md, LocalStack.",
    )
    localstack.add_argument("action", choices=("up", "down"))
    localstack.add_argument("--port", type=int, default=DEFAULT_PORT,
                            help=f"the gateway's port on 127.0.0.1 (default: {DEFAULT_PORT}, "
                            "localstack-client's default)")
    localstack.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    localstack.set_defaults(func=cmd_localstack)
    console_output.register(subparsers, common)  # logs: each instance's boot log


def _stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to build")
    group.add_argument("--count", type=int, default=2, help="number of instances (default: 2)")
    group.add_argument("--instance-type", default=None,
                       help="EC2 type (default: one that EC2 says is free-tier eligible for "
                       "your account, t3.micro or t2.micro first)")
    group.add_argument(
        "--public-access", default="me", metavar="me|any|CIDR",
        help="who else may reach port 5000 directly, besides the load balancer: me (your "
        "public IP, looked up on real AWS only), any (0.0.0.0/0), or a CIDR (default: me)",
    )
    group.add_argument("--key-name", default=None,
                       help="an EC2 key pair: opens SSH (22) to your IP only (default: no SSH)")
    group.add_argument("--default-vpc", action="store_true",
                       help="use the account's default VPC instead of a dedicated one")
    group.add_argument("--no-wait-healthy", action="store_true",
                       help="return once the load balancer is active, without waiting for "
                       "healthy targets")
    group.add_argument("--state-dir", default=STATE_DIR,
                       help=f"where to write <stack>.json (default: {STATE_DIR})")


def settings_from(args: argparse.Namespace, target) -> Settings:
    """Emulators answer at once, so their waits poll fast; AWS gets its usual pacing."""
    make = Settings.fast if target.is_emulator else Settings
    knobs = {"stack": args.stack, "state_dir": args.state_dir}
    if hasattr(args, "count"):
        knobs.update(
            instance_count=args.count,
            instance_type=args.instance_type,
            public_access=args.public_access,
            key_name=args.key_name,
            use_default_vpc=args.default_vpc,
            wait_for_healthy=not args.no_wait_healthy,
        )
    return make(**knobs)


def _deployed(args: argparse.Namespace):
    """The emulator the stack's state file puts it in, when no endpoint is set (or None)."""
    return emulator.deployed_in_emulator(args.stack, args.state_dir, backend=args.backend,
                                          default_stack=DEFAULT_STACK)


def _stack(args: argparse.Namespace, local=None):
    """The Stack, once everything that needs no AWS call is known to be right: the settings,
    the region, and that credentials exist. No client is built before.

    `local` (status, destroy): a stack that its state file puts in an emulator (README's
    moto, `make local-up`; _deployed) is read there, with fake keys."""
    from infra.aws.stack import Stack

    if local is not None:
        args.stack = local.stack
        clients = emulator.deployed_clients(local)
        settings = settings_from(args, clients.target)
        preflight.check_settings(settings)
        return Stack(clients, settings, Progress())
    target = resolve_target(args.backend, args.region)
    settings = settings_from(args, target)
    preflight.check_settings(settings)
    preflight.check_region(target.region)
    clients = Clients(target)
    preflight.require_credentials(clients)
    return Stack(clients, settings, Progress())


def _aws_errors(command):
    """Any AWS error that no step named yet: one line by its class, never a traceback."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except Exception as exc:
            if not failures.is_aws_failure(exc):
                raise
            raise failures.as_user_error(exc, f"running {args.command}") from None
    return run


@_aws_errors
def cmd_deploy(args: argparse.Namespace) -> int:
    stack = _stack(args)
    state = stack.deploy()
    print(render_deploy_summary(state, stack.settings, args.backend))
    return 0


@_aws_errors
def cmd_plan(args: argparse.Namespace) -> int:
    stack = _stack(args)
    lines = stack.plan()
    print(f"deploy of stack {args.stack} would:")
    for line in lines:
        print(f"  {line}")
    return 0


@_aws_errors
def cmd_status(args: argparse.Namespace) -> int:
    local = _deployed(args)
    print(render_status(_stack(args, local).status(), local.lb if local else ""))
    return 0


@_aws_errors
def cmd_destroy(args: argparse.Namespace) -> int:
    local = _deployed(args)
    if local is not None and local.lb:
        raise UserError(f"stack {local.stack} is the local testbed's: `make local-down "
                        f"STACK={local.stack}` stops its processes and deletes the stack")
    result = _stack(args, local).destroy()
    print(f"stack {result['stack']}: {len(result['deleted'])} resources deleted; "
          "nothing tagged with it is left")
    return 0


def cmd_localstack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from infra.aws.localstack import STATE, LocalStack

    process = LocalStack(port=args.port, state=Path(args.dir) if args.dir else STATE)
    if args.action == "up":
        process.up()
        host = "" if args.port == DEFAULT_PORT else f"LOCALSTACK_HOST=127.0.0.1:{args.port} "
        print(f"next: {host}make deploy-localstack, and `make localstack-down` when done")
    else:
        process.down()
    return 0


def grade_command(state: dict, stack: str) -> str:
    extra = "" if stack == DEFAULT_STACK else f" STACK={stack}"
    return f"make grade LB={state['lb_dns']}{extra}"


def destroy_command(stack: str, backend: str = "aws") -> str:
    target = "destroy-localstack" if backend == "localstack" else "destroy-aws"
    return f"make {target}" + ("" if stack == DEFAULT_STACK else f" STACK={stack}")


# The testbed's way to grade the whole system on this machine (docs/testbed.md).
LOCAL_GRADE = ("`make local-up`, then `make grade LB=127.0.0.1:8080` (or `make test-local` "
               "for the whole run: provision, grade, failover, tear down)")


def render_deploy_summary(state: dict, settings: Settings, backend: str = "aws") -> str:
    health = {h["id"]: h for h in state.get("target_health") or []}
    where = (f"account {state.get('account') or '?'}, region {state['region']}"
             + (f", emulator at {state['endpoint_url']}" if state.get("emulator") else ""))
    lines = [
        "",
        f"deployed stack {settings.stack}: {where}",
        f"load balancer: {state['lb_dns']} (HTTP {state['listener_port']} -> "
        f"instances' port {state['app_port']})",
        f"instance type: {state.get('instance_type')} "
        f"({state.get('instance_type_why') or 'chosen by an earlier deploy'})",
        "instances:",
    ]
    for inst in state["instances"]:
        h = health.get(inst["id"], {})
        lines.append(f"  {inst['id']}  public {inst['public_ip'] or '-':15}  "
                     f"{inst['az']}  target {_health_text(h)}")
    lines.append(f"state file: {state_path(settings.state_dir, settings.stack)}")
    items = pricing.stack_items([i.get("type") or state.get("instance_type") or ""
                                 for i in state["instances"]],
                                sum(1 for i in state["instances"] if i.get("public_ip")),
                                1, state.get("lb_zones") or 2)
    if state.get("emulator"):
        lines.append(f"this DNS name was made by an emulator and does not resolve: nothing "
                     f"answers at it. To grade the whole system on this machine: {LOCAL_GRADE}")
        lines.append(f"cost: nothing here; on AWS this stack would cost about "
                     f"${pricing.total_hourly(items):.4f} per hour ({pricing.PRICE_NOTE})")
    else:
        lines.append(f"submit this: {state['lb_dns']}")
        lines.append("check it first as the autograder will: "
                     f"{grade_command(state, settings.stack)}")
        lines.append(f"cost while it exists ({pricing.PRICE_NOTE}):")
        lines += pricing.render_items(items)
    lines.append(f"run `{destroy_command(settings.stack, backend)}` when you are done: it deletes "
                 "everything tagged with the stack, and the cost stops")
    return "\n".join(lines)


def _health_text(h: dict) -> str:
    if not h:
        return "not checked"
    text = h.get("state") or "?"
    if h.get("reason"):
        text += f" ({h['reason']}: {h.get('description') or ''})"
    return text


def render_status(status: dict, local_lb: str = "") -> str:
    """`local_lb`: the local testbed's load balancer (host:port), when the stack is its."""
    lb = status["load_balancer"]
    account = f"account {status['account']}, " if status.get("account") else ""
    lines = [f"stack {status['stack']} in {account}region {status['region']}"
             + (f" at {status['endpoint_url']}" if status["endpoint_url"] else "")]
    nothing = not (lb or status["instances"] or status["vpc_id"] or status["security_groups"]
                   or status["target_group"])
    if nothing:
        lines.append("  nothing deployed (no resource carries this stack's tags)")
        return "\n".join(lines)
    lines.append(f"  vpc: {status['vpc_id'] or '(default VPC or none)'}")
    for sn in status["subnets"]:
        lines.append(f"  subnet: {sn['id']} {sn['az']} {sn['cidr']}")
    for g in status["security_groups"]:
        lines.append(f"  security group: {g['id']} {g['name']}: {', '.join(g['rules']) or '-'}")
    if lb:
        lines.append(f"  load balancer: {lb['name']} {lb['state']} {lb['scheme']}")
        lines.append(f"  dns name: {lb['dns']}")
    else:
        lines.append("  load balancer: none")
    for li in status["listeners"]:
        lines.append(f"  listener: {li['protocol']} {li['port']} -> target group")
    tg = status["target_group"]
    if tg:
        lines.append(f"  target group: {tg['name']} {tg['protocol']} {tg['port']} "
                     f"health check {tg['health_check_path']}")
    for inst in status["instances"]:
        lines.append(f"  instance: {inst['id']} {inst['state']} {inst['az']} "
                     f"public {inst['public_ip'] or '-'} private {inst['private_ip'] or '-'}")
    for h in status["target_health"]:
        lines.append(f"  target: {h['id']}:{h['port']} {_health_text(h)}")
    lines.append(_age_and_cost(status))
    if lb and local_lb:
        lines.append(f"the local testbed's load balancer: next: make grade LB={local_lb}")
    elif lb and status.get("emulator"):
        lines.append(f"the DNS name exists only in the emulator and does not resolve; to grade "
                     f"on this machine: {LOCAL_GRADE}")
    elif lb:
        lines.append(f"next: {grade_command({'lb_dns': lb['dns']}, status['stack'])}")
    done = f"make local-down STACK={status['stack']}" if local_lb else \
        destroy_command(status["stack"])
    lines.append(f"when you are done: {done}")
    return "\n".join(lines)


def _age_and_cost(status: dict) -> str:
    """How long the stack has existed and what it has cost so far, at pricing.py's prices."""
    live = [i for i in status["instances"] if i.get("state") in ("pending", "running")]
    lb = status["load_balancer"]
    hours, spent = pricing.cost_so_far(live, lb)
    items = pricing.stack_items([i.get("type") or "" for i in live],
                                sum(1 for i in live if i.get("public_ip")),
                                1 if lb else 0, (lb or {}).get("zones") or 0)
    age = f"up {pricing.render_age(hours)}" if hours is not None else "age unknown"
    if status.get("emulator"):
        return f"  {age}; costs nothing (an emulator)"
    return (f"  {age}: about ${spent:.2f} so far, ${pricing.total_hourly(items):.4f} per hour "
            f"now ({pricing.PRICE_NOTE})")
