"""`python -m infra COMMAND`: one entry point; each command lives in its own module.

A command module defines `register(subparsers, common)`: it adds its parser (with
`parents=[common]` where it talks to AWS) and sets `func`, which takes the parsed
arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from infra.config import DEFAULT_STACK
from infra.errors import UserError, not_installed

COMMAND_MODULES: tuple[str, ...] = (
    # one line per command module; keep this list in the order of `--help`
    "infra.aws.cli",
    "infra.aws.policy",
    "infra.local.cli",
    "infra.grade.cli",
    "infra.doctor.cli",
    "infra.bench.cli",
)


def common_options() -> argparse.ArgumentParser:
    """Options shared by every command that talks to an AWS backend."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("stack and backend")
    group.add_argument(
        "--stack",
        default=DEFAULT_STACK,
        help=f"stack name, used in every tag and resource name (default: {DEFAULT_STACK})",
    )
    group.add_argument(
        "--region",
        default=None,
        help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / your profile's region)",
    )
    group.add_argument(
        "--backend",
        choices=("aws", "localstack"),
        default="aws",
        help="aws: the standard credential chain, honouring AWS_ENDPOINT_URL (moto server too); "
        "localstack: localstack-client's endpoints (default: aws)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m infra",
        description="Deploy, test locally, grade and diagnose the seed app behind a load balancer.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def _stdout_closed() -> bool:
    """True if standard output's reader has gone (a pipe with no reader polls POLLERR). It
    then points at /dev/null, so that the interpreter's last flush does not fail again."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll() (Windows) or no real stdout
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return closed


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        if (exc.name or "infra").split(".")[0] in ("infra", "app"):
            raise  # a bug here, not a missing package
        print(f"error: {not_installed(f'the Python package {exc.name}')}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's, not the reader's: a bug to see
        return 141  # the reader left (`| head`): stop quietly, as a program killed by SIGPIPE
