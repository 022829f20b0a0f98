"""Where each collected command (tests/hints.py) runs, what stands in for its placeholders,
and the few that are not run here, each with its reason (ALLOWED)."""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

from fresh_shell import REPO, Shell
from hints import Command, doc_blocks

from infra.local.processes import hold_port, listening, wait_until

# (pattern, why it is not run by the suite). Most need a real AWS account.
ALLOWED: list[tuple[str, str]] = [
    (r"^aws ", "the AWS CLI, against a real AWS account"),
    (r"^export AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)=(ASIA)?\.\.\.$",
     "a real AWS account's keys (Learner Lab)"),
    (r"^export AWS_PROFILE=", "a real AWS account's named profile"),
    (r"elb\.amazonaws\.com|LB=<|LB=my-lb|--lb my-alb|\{state\['lb_dns'\]\}",
     "a load balancer in a real AWS account"),
    (r"^make (plan|deploy-aws|destroy-aws)$|^make deploy-aws STACK=\{stack\}$"
     r"|^\.venv/bin/python -m infra (deploy|destroy) --stack demo|STACK=demo\b",
     "plans, builds or deletes a stack in the shell's AWS account (README's moto block and "
     "the AWS_ENDPOINT_URL example run the same targets against moto)"),
    (r"^make grade-class |--roster class\.csv|--gradescope results\.json",
     "grades a class's load balancers in real AWS accounts"),
    (r"docker compose", "LocalStack's Docker image (no Docker engine or Docker Hub here; "
     "tests/aws/test_localstack_compose.py checks the compose file)"),
    (r"localstack|LOCALSTACK", "LocalStack from its own venv: make test-localstack (CI) "
     "runs docs/aws.md's block as printed in a fresh shell, and every command against it "
     "(tests/aws/test_localstack_real.py); too heavy for make test"),
    (r"^make test$", "the suite itself: this test runs inside it"),
    (r"^make test-boot$|--machines", "booted machines: root, systemd-nspawn and minutes; "
     "`make test-boot` runs them (CI too)"),
    (r"^make lock\b", "re-pins from PyPI and rewrites requirements.lock"),
    (r"^make bench$|bench --duration 5 --no-docs", "every bench step: minutes, and it "
     "rewrites docs/benchmarks.*; one step runs (tests/test_hints_long.py)"),
    (r"^cp points\.toml", "the instructor's own points.toml (optional)"),
    (r"^(python -m app|flask run) --host.?0\.0\.0\.0", "runs on an EC2 instance, with its "
     "Python, on every interface (FAQ 1)"),
    (r"^python -m app( \(|$)|^python -m infra local up \(|^python -m infra$"
     r"|^(\.venv/bin/)?python -m infra grade$",
     "names a program in a sentence or a benchmark's label: not a command to type"),
    (r"^python -m infra\.local\.supervisor$", "the testbed starts it itself"),
    (r"^\.venv/bin/python -m infra$", "argparse's usage line; each command's --help runs"),
    (r"^kill -9 \{", "printed with the pids that survived `local down`; only kill -9 itself"),
]

def allowed(command: Command) -> str:
    if any("AWS_ENDPOINT_URL=http://127.0.0.1" in e for e in command.exports):
        return ""  # its block aimed the shell at a moto server: it runs there
    for pattern, why in ALLOWED:
        if re.search(pattern, command.text):
            return why
    return ""


# A line that later lines depend on: a background job, an export, a variable, a directory.
SEQUENCE_LINE = re.compile(r"&$|^export |^kill %|^mkdir |^[A-Z_][A-Z0-9_]*=(\S*|\$\(.*\))$")


def sequence_blocks() -> dict[str, list[Command]]:
    """Doc blocks whose lines depend on each other (a background job, exports, a directory
    made first): each runs as one script."""
    return {b: cs for b, cs in doc_blocks().items()
            if any(SEQUENCE_LINE.search(c.text) for c in cs)}


_SEQUENCES = sequence_blocks()
# What test_hints_printed.py runs from the output of the commands that print it (commands.py's
# builders, the stopped-emulator and missing-package lines) or as a moto example.
PRINTED = re.compile(r"\{(self\.|action|meta\.|port\}|deployed\.)|^AWS_ENDPOINT_URL=http"
                     r"|^\.venv/bin/moto_server ")
LONG = re.compile(r"^make (local-up|local-down|test-local|test-faults|clean)\b"
                  r"|-m infra bench --only")
SERVER = re.compile(r"^make run$|^\.venv/bin/flask ")
TESTBED = re.compile(r"^make (local-status|grade|doctor|status|logs|local-break|local-fix)\b"
                     r"|^\.venv/bin/python -m infra local (kill-instance|start-instance|status)"
                     r"|^\.venv/bin/python -m infra grade 127\.0\.0\.1:8080")
PLAIN = re.compile(r"^make( (help|iam-policy|setup\S*|lint)\b.*)?$|^make local-break FAULT=--list$"
                   r"|^\.venv/bin/python -m infra (policy|\S+ --help)|^export AWS_REGION=")


def classify(command: Command) -> str:
    """allowed, sequence, printed, long, server, synopsis, testbed, plain (or unknown)."""
    if allowed(command):
        return "allowed"
    if command.block in _SEQUENCES:
        return "sequence"
    if command.kind == "synopsis":
        return "synopsis"
    if command.kind == "transcript" or SERVER.search(command.text):
        return "server"
    for name, pattern in (("printed", PRINTED), ("long", LONG), ("plain", PLAIN),
                          ("testbed", TESTBED)):
        if pattern.search(command.text):
            return name
    return "unknown"


def ran_ok(command: Command, done: subprocess.CompletedProcess) -> bool:
    return done.returncode == 0 and "Traceback" not in done.stderr


# --- the Makefile -----------------------------------------------------------------------------
def make_reads(target: str) -> set[str]:
    """The variables `make TARGET` reads: its recipe's, and those of the variables it uses."""
    text = (REPO / "Makefile").read_text()
    definitions = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=(.*)$", text, flags=re.M))
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", text, flags=re.M)
    wanted, seen = set(re.findall(r"\$\(([A-Z_]+)\)", recipe.group(1) if recipe else "")), set()
    while wanted:
        name = wanted.pop()
        seen.add(name)
        wanted |= set(re.findall(r"\$\(([A-Z_]+)\)", definitions.get(name, ""))) - seen
    # $(if $(filter command line,$(origin STACK)),...): origin takes a bare name
    seen |= {m for body in [recipe.group(1) if recipe else ""] + [
        definitions.get(n, "") for n in list(seen)] for m in re.findall(r"origin ([A-Z_]+)", body)}
    return seen


# --- a running testbed ----------------------------------------------------------------------
def random_first_address() -> str:
    rng = random.Random()
    return f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.11"


FAULT = "app-sg-closed"


class Bed:
    """`make local-up` in a fresh checkout, with a free port and free loopback addresses
    (the only change to what is printed), and `make local-down` after."""

    def __init__(self, tmp_path: Path, stack: str = ""):
        self.shell = Shell(tmp_path)
        self.stack = stack or "seed-lb-local"
        self._port = hold_port()  # until the testbed is down (tests/ports.py)
        self.port = self._port.getsockname()[1]
        self.first = random_first_address()
        self.up: subprocess.CompletedProcess | None = None

    def options(self) -> str:
        return f"--lb-port {self.port} --first-address {self.first}"

    def __enter__(self) -> Bed:
        stack = f" STACK={self.stack}" if self.stack != "seed-lb-local" else ""
        self.up = self.shell.run(f"make local-up{stack} ARGS='{self.options()}'")
        if self.up.returncode != 0:
            self.__exit__()
            raise AssertionError(self.up.stdout + self.up.stderr)
        meta = json.loads((self.shell.checkout / ".local" / self.stack / "testbed.json")
                          .read_text())
        self.lb, self.endpoint = meta["lb"], meta["endpoint"]
        self.instances: dict[str, str] = meta["instances"]
        if not self.healthy():  # the commands meet the testbed as a user would, settled
            self.__exit__()
            raise AssertionError("the testbed's targets did not turn healthy")
        return self

    def __exit__(self, *exc) -> None:
        stack = f" STACK={self.stack}" if self.stack != "seed-lb-local" else ""
        try:
            self.shell.run(f"make local-down{stack}")
            assert wait_until(lambda: not listening("127.0.0.1", self.port), 10)
        finally:
            self._port.close()

    def target_states(self) -> list[str]:
        done = self.shell.run(f".venv/bin/python -m infra local status --json "
                              f"--stack {self.stack}")
        try:
            instances = json.loads(done.stdout)["instances"]
        except (ValueError, KeyError):
            return []
        return [(i.get("health") or {}).get("state") or "" for i in instances]

    def broken(self, timeout: float = 60.0) -> bool:
        """A break has taken effect: a target is unhealthy. Fixed before that, the health
        checks it already failed could still mark a target unhealthy after `healthy` said
        all was well (seen under make test's load: the next command's doctor then found
        Target.Timeout on both)."""
        return wait_until(lambda: any(s not in ("", "healthy") for s in self.target_states()),
                          timeout, 1.0)

    def healthy(self, timeout: float = 60.0) -> bool:
        """Every target healthy in the control plane again, and the grader passes (after a
        fault's fix: the health checks' window). The grade alone is not enough: an ALB
        that fails open serves while its targets are still unhealthy."""
        def targets_healthy() -> bool:
            states = self.target_states()
            return bool(states) and all(s == "healthy" for s in states)

        return wait_until(targets_healthy, timeout, 1.0) and wait_until(
            lambda: self.shell.run(f"make -s grade LB={self.lb}").returncode == 0, 10, 1.0)

    def substitute(self, command: Command) -> str:
        """The command with this testbed in place of the documented defaults and of the
        message's fields, after the exports of its doc block."""
        first_id = next(iter(self.instances))
        text = command.text
        for old, new in (("127.0.0.1:8080", self.lb), ("i-0123...", first_id),
                         ("127.0.0.11:5000,127.0.0.12:5000", ",".join(self.instances.values())),
                         ("FAULT=NAME", f"FAULT={FAULT}"), ("LB=ADDRESS", f"LB={self.lb}")):
            text = text.replace(old, new)
        fields = {"lb": self.lb, "local_lb": self.lb, "n": self.stack, "stack": self.stack,
                  "local.stack": self.stack, "status['stack']": self.stack}
        for name in command.placeholders:
            if name not in fields:
                raise AssertionError(f"{command.where}: what stands for {{{name}}}? "
                                     "(tests/hints_run.py, Bed.substitute)")
            text = text.replace("{" + name + "}", fields[name])
        return "\n".join([*command.exports, text])

    def steps(self, command: Command) -> list[str]:
        """The command, and what puts the testbed back after it."""
        text = self.substitute(command)
        if re.search(r"^make local-break FAULT=(?!--)", text, flags=re.M):
            return [text, text.replace("make local-break", "make local-fix")]
        if "local kill-instance" in text:
            return [text, text.replace("kill-instance", "start-instance")]
        if "local start-instance" in text:
            return [text.replace("start-instance", "kill-instance"), text]
        return [text]

    def report(self, command: Command, done: subprocess.CompletedProcess, step: str = "") -> str:
        return (f"{command.where}: `{step or command.text}` exited {done.returncode}\n"
                f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
