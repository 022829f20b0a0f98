"""Every command the project prints or documents runs as printed, in a fresh shell.

tests/hints.py collects them: each command in the CLI's message strings and each line of
the fenced `sh` blocks of README.md and docs/*.md. Here each one is

- checked as written: never a bare `python` (a fresh shell's is the system's), a make target
  that exists and the variables it reads, `.venv/bin/python -m infra ...` that parses;
- and run in `env -i bash` from a checkout of its own, under the loopback guard
  (tests/fresh_shell.py), in the situation it is printed for: against a running local
  testbed, a moto server, the app, or nothing; or it is in ALLOWED, which says why not
  (most need a real AWS account).

What the testbed commands print (local up, break, fix, status, a stopped emulator, a
missing package) is run too: tests/test_hints_printed.py. The slow ones (the whole test
run, the fault drills, the bench step, make clean): tests/test_hints_long.py.
"""

from __future__ import annotations

import re
import shlex

import pytest
from hints import Command, doc_commands, make_targets, source_hints
from hints_run import ALLOWED, Bed, allowed, classify, make_reads, ran_ok

from infra.cli import build_parser

SOURCE = source_hints()
DOCS = doc_commands()
EVERY = SOURCE + DOCS

def _ids(commands: list[Command]) -> list[str]:
    return [f"{c.where} {c.text[:60]}" for c in commands]


# --- as written -------------------------------------------------------------------------------
BARE = re.compile(r"^(?:[A-Z_]+=\S+ +)*(python3?|pip3?|flask|moto_server|pytest|ruff)\b")


@pytest.mark.parametrize("command", EVERY, ids=_ids(EVERY))
def test_no_command_starts_a_bare_python(command):
    if allowed(command):
        return  # e.g. what an instance runs, with its own Python
    assert not BARE.match(command.text), (
        f"{command.where}: `{command.text}` runs the system's Python in a fresh shell: "
        "print a make target or .venv/bin/...")


MAKE = [c for c in EVERY if re.match(r"^(?:[A-Z_]+=\S+ +)*make ", c.text)]


@pytest.mark.parametrize("command", MAKE, ids=_ids(MAKE))
def test_each_make_command_names_a_target_and_the_variables_it_reads(command):
    text = re.sub(r"<[^<>]*>", "PLACEHOLDER", command.text)  # <the DNS name deploy printed>
    words = shlex.split(text.split(">")[0].split("&&")[0].replace("{", "").replace("}", ""))
    words = words[words.index("make") + 1:]
    targets = [w for w in words if "=" not in w]
    assert len(targets) == 1 and targets[0] in make_targets(), (command.where, command.text)
    for word in words:
        if "=" in word:
            name = word.split("=", 1)[0]
            assert name in make_reads(targets[0]), (
                f"{command.where}: make {targets[0]} does not read {name}")


INFRA = [c for c in EVERY if c.text.startswith(".venv/bin/python -m infra ")
         and not c.placeholders and c.kind != "synopsis" and not allowed(c)]


@pytest.mark.parametrize("command", INFRA, ids=_ids(INFRA))
def test_each_infra_command_parses(command):
    argv = shlex.split(command.text.split(" > ")[0].split(" #")[0])[3:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{command.where}: `{command.text}` does not parse (exit {exc.code})")


# --- run ----------------------------------------------------------------------------------------
PLAIN = [c for c in EVERY if classify(c) == "plain"]
TESTBED = [c for c in EVERY if classify(c) == "testbed"]
SYNOPSES = [c for c in EVERY if classify(c) == "synopsis"]


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """A local testbed started as README says (`make local-up`), on a free port and free
    loopback addresses, in a checkout of its own; `make local-down` at the end."""
    with Bed(tmp_path_factory.mktemp("hints")) as running:
        yield running


@pytest.mark.integration
@pytest.mark.parametrize("command", PLAIN, ids=_ids(PLAIN))
def test_runs_in_a_fresh_shell(bed, command):
    done = bed.shell.run(bed.substitute(command))
    assert ran_ok(command, done), bed.report(command, done)


@pytest.mark.integration
@pytest.mark.parametrize("command", SYNOPSES, ids=_ids(SYNOPSES))
def test_a_synopsis_names_options_its_help_lists(bed, command):
    program = command.text.split(" [")[0].split()
    program = [w for w in program if not w.isupper()]  # ADDRESS, NAME: the operands
    done = bed.shell.run(shlex.join(program) + " --help")
    assert done.returncode == 0, done.stderr
    for option in re.findall(r"(--[a-z][a-z-]*)", command.text):
        assert option in done.stdout, f"{command.where}: {option} is not in --help"


@pytest.mark.integration
@pytest.mark.parametrize("command", TESTBED, ids=_ids(TESTBED))
def test_runs_against_the_running_testbed(bed, command):
    steps = bed.steps(command)  # a break is undone by its fix at once, a kill by a start
    try:
        for step in steps:
            done = bed.shell.run(step)
            assert ran_ok(command, done), bed.report(command, done, step)
            if "local-break" in step and len(steps) > 1:
                assert bed.broken(), f"{step} did not take effect"
    finally:
        if len(steps) > 1:  # whatever happened, the next command meets a healthy testbed
            assert bed.healthy(), "the testbed did not recover for the next command"
    assert bed.shell.off_machine() == ""


def test_every_command_is_run_or_allowed_with_a_reason():
    """The count for the record: each command is run by one of the hint tests, or ALLOWED
    says why not."""
    buckets: dict[str, list[Command]] = {}
    for command in EVERY:
        buckets.setdefault(classify(command), []).append(command)
    unknown = buckets.pop("unknown", [])
    assert not unknown, "teach tests/hints_run.py where these run:\n" + "\n".join(
        f"  {c.where}: {c.text}" for c in unknown)
    run = sum(len(v) for k, v in buckets.items() if k != "allowed")
    reasons = {why for c in buckets.get("allowed", []) for why in [allowed(c)]}
    print(f"\n{len(EVERY)} commands ({len(SOURCE)} in the CLI's messages, {len(DOCS)} in "
          f"the docs): {run} run, {len(buckets.get('allowed', []))} allowed "
          f"({len(reasons)} reasons)")
    for kind, commands in sorted(buckets.items()):
        print(f"  {kind}: {len(commands)}")
    assert set(reasons) <= {why for _, why in ALLOWED}
