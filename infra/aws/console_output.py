"""`python -m infra logs` (make logs): each instance's state and boot log, from its console.

EC2 keeps what an instance printed to its console (the kernel, systemd, cloud-init and the
user data's own lines) and returns it with `GetConsoleOutput`, base64-encoded, the most
recent 64 KB (botocore's ec2 model, GetConsoleOutputResult.Output; botocore decodes it,
handlers.decode_console_output, as the AWS CLI does). By default that is
what was posted shortly after a state change (boot, stop); with `Latest`, on Nitro instance
types, what is there now. So right after a launch it may be empty for a few minutes: the
command says so instead of showing nothing.

For each instance of the stack it prints its state, then the boot script's verdict first
(`seed-lb user data: done ...` or `seed-lb user data: FAILED at line N ...`, from
infra/aws/templates/user_data.sh), the script's output before a failure (pip's error, say),
its progress lines, and the console's last lines, escape sequences and carriage returns
removed. The same on AWS and on the booted testbed, whose moto server returns each
machine's console (infra/local/motohook.py); against a testbed's moto server it needs no
AWS_ENDPOINT_URL: the state file says where it is.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from infra.config import name_tag, stack_filters

MARK = "seed-lb user data:"
FAILED = f"{MARK} FAILED"
DONE = f"{MARK} done"
START = f"{MARK} start"
LAST_LINES = 15
EMPTY_NOTE = ("no console output yet: EC2 posts an instance's console output shortly after "
              "it boots (it can take a few minutes) and keeps the latest 64 KB; run "
              "`make logs` again in a minute")
# Latest=true is for Nitro instance types; older ones refuse it.
LATEST_REFUSED = {"UnsupportedOperation", "InvalidParameterCombination", "InvalidParameterValue",
                  "InvalidParameter"}

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def verdict(lines) -> str | None:
    """The boot script's last word in `lines`: its "done" or "FAILED" line, or None."""
    found = None
    for line in lines:
        if DONE in line or FAILED in line:
            found = line[line.index(MARK):].strip()
    return found


def clean(text: str) -> str:
    """Console text as lines: terminal escapes and control characters removed, CR-LF and
    lone CRs as line ends."""
    text = _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


@dataclass
class BootLog:
    instance_id: str
    state: str
    name: str = ""
    lines: list[str] = field(default_factory=list)  # the console, cleaned
    timestamp: str = ""
    error: str = ""  # why the console could not be read
    failure: ClientError | None = field(default=None, repr=False)  # the answer that said so

    @property
    def verdict(self) -> str | None:
        """The boot script's last "done" or "FAILED" line on the console."""
        return verdict(self.lines)

    @property
    def failed(self) -> bool:
        return bool(self.verdict and self.verdict.startswith(FAILED))

    def progress(self) -> list[str]:
        return [line[line.index(MARK):].strip() for line in self.lines if MARK in line]

    def before_failure(self, count: int = 12) -> list[str]:
        """The script's output just before its FAILED line (what went wrong), without the
        machine's other console lines (systemd's, the kernel's, cloud-init's own)."""
        if not self.failed:
            return []
        end = max(i for i, line in enumerate(self.lines) if FAILED in line)
        start = max((i for i, line in enumerate(self.lines[:end]) if START in line), default=0)
        chosen = [text for text in (script_output(line) for line in self.lines[start:end])
                  if text and MARK not in text]
        return chosen[-count:]


# What cloud-init's output looks like on a console: systemd forwards it from the journal
# with a timestamp and the unit's process ("[   61.5] cloud-init[1234]: ..."). The script's
# own lines are in it, cloud-init's log lines (a date first) too.
_FROM_CLOUD_INIT = re.compile(r"^\[\s*[\d.]+\] cloud-init\[\d+\]: ?(.*)$")
_CLOUD_INIT_OWN = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ - |Cloud-init v\. |ci-info: )")
_OTHERS = ("[  OK  ]", "[FAILED]", "[DEPEND]", "Starting ", "Stopping ", "Mounting ",
           "Unmounting ", "See 'systemctl")


def script_output(line: str) -> str:
    """A console line as the boot script printed it ('' when it is not the script's)."""
    stripped = line.strip()
    match = _FROM_CLOUD_INIT.match(stripped)
    if match:
        text = match.group(1)
        return "" if _CLOUD_INIT_OWN.match(text) else text
    if stripped.startswith(_OTHERS) or re.match(r"^\[\s*[\d.]+\]", stripped):
        return ""  # systemd's status lines, the kernel's and other units' messages
    return stripped


def console_of(ec2, instance_id: str) -> tuple[str, str]:
    """(console text, its timestamp): Latest where the instance type allows it. botocore
    has decoded the base64 already ('' when EC2 has posted nothing yet)."""
    try:
        answer = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in LATEST_REFUSED:
            raise
        answer = ec2.get_console_output(InstanceId=instance_id)
    stamp = answer.get("Timestamp")
    return answer.get("Output") or "", stamp.isoformat() if hasattr(stamp, "isoformat") else ""


def boot_log(ec2, instance: dict) -> BootLog:
    """An instance (as DescribeInstances gives it) and its console. A console that cannot
    be read (AccessDenied, say) is in `error`, not raised."""
    log = BootLog(instance["InstanceId"], instance.get("State", {}).get("Name", "?"),
                  name_tag(instance) or "")
    try:
        text, log.timestamp = console_of(ec2, log.instance_id)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        log.error = f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
        log.failure = exc
        return log
    log.lines = [line.rstrip() for line in clean(text).split("\n")]
    while log.lines and not log.lines[-1]:
        log.lines.pop()
    return log


def stack_logs(ec2, stack: str) -> list[BootLog]:
    """Every instance tagged with the stack that is not terminated, in launch order."""
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=stack_filters(stack)):
        for reservation in page["Reservations"]:
            found += [i for i in reservation["Instances"]
                      if i.get("State", {}).get("Name") != "terminated"]
    found.sort(key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]))
    return [boot_log(ec2, instance) for instance in found]


def render(logs: list[BootLog], stack: str, last: int = LAST_LINES) -> str:
    if not logs:
        return f"stack {stack}: no instance carries its tags (nothing deployed?)"
    out = []
    for log in logs:
        name = f" ({log.name})" if log.name else ""
        out.append(f"instance {log.instance_id}{name}: {log.state}")
        if log.error:
            out.append(f"  console output: could not be read: {log.error}")
            continue
        if not log.lines:
            out.append(f"  {EMPTY_NOTE}")
            continue
        verdict = log.verdict
        out.append(f"  {verdict}" if verdict else
                   "  the boot script has not finished (no \"done\" or \"FAILED\" line yet)")
        before = log.before_failure()
        if before:
            out.append("  what the script printed before it failed:")
            out += [f"    {line}" for line in before]
        progress = [p for p in log.progress() if p != verdict]
        if progress:
            out.append("  progress:")
            out += [f"    {line}" for line in progress]
        out.append(f"  the console's last {min(last, len(log.lines))} lines"
                   + (f" (as of {log.timestamp})" if log.timestamp else "") + ":")
        out += [f"    {line}" for line in log.lines[-last:]]
    return "\n".join(out)


def _clients(args):
    from infra.aws import emulator
    from infra.aws.clients import Clients, resolve_target
    from infra.config import DEFAULT_STACK
    from infra.state import read_state

    # the emulator this stack was deployed into (a local testbed's moto server), as status
    # and the doctor find it
    local = emulator.deployed_in_emulator(args.stack, args.state_dir, backend=args.backend,
                                          default_stack=DEFAULT_STACK)
    if local is not None:
        args.stack = local.stack
        return emulator.deployed_clients(local)
    state = read_state(args.state_dir, args.stack) or {}
    return Clients(resolve_target(args.backend, args.region or state.get("region")))


def cmd_logs(args: argparse.Namespace) -> int:
    from infra.aws import failures

    step = "reading the instances' console output"
    with failures.stepping(step):
        logs = stack_logs(_clients(args).ec2, args.stack)
    denied = next((log.failure for log in logs
                   if log.failure is not None and failures.is_denied(log.failure)), None)
    if denied is not None:  # the doctor reads on; asked for the logs, a denial is the answer
        raise failures.as_user_error(denied, step)
    print(render(logs, args.stack, args.lines))
    return 1 if any(log.failed for log in logs) else 0


def register(subparsers, common: argparse.ArgumentParser) -> None:
    from infra.config import STATE_DIR

    parser = subparsers.add_parser(
        "logs", parents=[common],
        help="each instance's state and boot log (its console output, decoded)",
        description="For each instance of the stack: its state, the boot script's verdict "
        "(its 'done' or 'FAILED at line N' line), what it printed before a failure, its "
        "progress lines and the console's last lines, from EC2's GetConsoleOutput. Exit "
        "code 1 when a boot script failed.",
        epilog="examples:\n  make logs\n  make logs STACK=seed-lb-local    # a local "
        "testbed (its state file names its moto server)\n  make logs STACK=demo "
        "ARGS='--lines 40'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=LAST_LINES,
                        help=f"how many of the console's last lines to show ({LAST_LINES})")
    parser.add_argument("--state-dir", default=STATE_DIR, help=argparse.SUPPRESS)
    parser.set_defaults(func=cmd_logs)
