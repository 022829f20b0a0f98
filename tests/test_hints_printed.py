"""What the commands print runs as printed, in a fresh shell, with the user's own flags: the
hints of `local up`, `local break` and `local fix` on a testbed of another stack, port and
addresses; a stopped emulator's; a missing package's outside .venv; the moto examples; the
docs' blocks whose lines depend on each other; the app and the docs' transcript against it.

The commands come from tests/hints.py (tests/test_hints.py says which run where); here they
are read from what the commands actually print, where they carry values (a port, a stack).
"""

from __future__ import annotations

import re
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from fresh_shell import Shell
from hints import Command, doc_blocks, hints_in, source_hints, strip_comment
from hints_run import Bed, allowed, classify, ran_ok, sequence_blocks

from infra.local.processes import listening, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]


def printed_commands(output: str) -> list[str]:
    """The commands an output names, as hints_in finds them in the source's strings; not
    the recipe lines that make echoes before it runs them."""
    said = [line for line in output.splitlines()
            if not line.startswith((".venv/bin/python -m ", "python3 .ci/install.py"))]
    return hints_in("\n".join(said))


def verdict_ran(done) -> bool:
    """A grade or doctor that ran and said its verdict (FAIL, errors: a broken testbed)."""
    return "Traceback" not in done.stderr and "error:" not in done.stderr and bool(
        re.search(r"^(PASS|FAIL)\b|^doctor: ", done.stdout, flags=re.M))


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A testbed of stack `probe`, on its own port and addresses: every hint must name them."""
    with Bed(tmp_path_factory.mktemp("probe"), stack="probe") as bed:
        yield bed


def test_what_local_up_prints_runs_and_names_the_stack(probe):
    out = probe.up.stdout
    printed = printed_commands(out)
    assert f"make grade LB={probe.lb}" in printed, out
    assert "make doctor STACK=probe" in printed and "make local-down STACK=probe" in printed
    assert f"a moto server at {probe.endpoint}" in out  # the control plane's endpoint
    for command in printed:
        if command.startswith("make local-"):
            assert "STACK=probe" in command, f"`{command}` would act on another testbed"
        if command.startswith("make local-down"):
            continue  # the module's end
        done = probe.shell.run(command)
        assert ran_ok(Command(command, "local up"), done), probe.report(
            Command(command, "local up"), done)
    assert probe.shell.off_machine() == ""


def test_what_local_break_prints_runs_and_fix_undoes_only_its_fault(probe):
    shell = probe.shell
    broke = shell.run("make -s local-break FAULT=lb-sg-no-80 STACK=probe")
    assert broke.returncode == 0, broke.stderr
    printed = printed_commands(broke.stdout)
    undo = "make local-fix FAULT=lb-sg-no-80 STACK=probe"
    assert undo in printed and "make doctor STACK=probe" in printed, broke.stdout
    for command in printed:
        if command != undo:  # see it: the grade and the doctor say FAIL, and run
            done = shell.run(command)
            assert done.returncode == 0 or verdict_ran(done), probe.report(
                Command(command, "local break"), done)
    # A second fault, then the first one's fix: the second stays.
    assert shell.run("make -s local-break FAULT=app-sg-closed STACK=probe").returncode == 0
    fixed = shell.run(undo)
    assert fixed.returncode == 0 and "fixed lb-sg-no-80" in fixed.stdout, fixed.stderr
    again = shell.run(undo)
    assert "lb-sg-no-80 was not broken" in again.stdout, again.stdout + again.stderr
    other = shell.run("make -s local-fix FAULT=app-sg-closed STACK=probe")
    assert "fixed app-sg-closed" in other.stdout, other.stdout + other.stderr
    for command in printed_commands(other.stdout):
        assert shell.run(command).returncode == 0, command
    assert probe.healthy(), "the grader did not PASS again after both fixes"
    assert shell.off_machine() == ""


def test_what_status_prints_for_the_testbed_runs(probe):
    done = probe.shell.run("make -s status STACK=probe")
    assert done.returncode == 0, done.stderr
    printed = printed_commands(done.stdout)
    assert f"make grade LB={probe.lb}" in printed and "make local-down STACK=probe" in printed
    assert probe.shell.run(f"make -s grade LB={probe.lb}").returncode == 0


def test_a_stopped_emulators_hint_starts_one_and_the_command_then_runs(tmp_path, free_port):
    shell = Shell(tmp_path)
    port = free_port
    state = shell.checkout / ".state"
    state.mkdir()
    (state / "seed-lb.json").write_text(
        f'{{"stack": "seed-lb", "emulator": true, "endpoint_url": "http://127.0.0.1:{port}", '
        f'"region": "us-east-1"}}')
    failed = shell.run("make -s destroy-aws")
    assert failed.returncode != 0
    printed = printed_commands(failed.stderr)
    start = f".venv/bin/moto_server -H 127.0.0.1 -p {port} &"
    assert start in printed and "make local-up" in printed and \
        "rm .state/seed-lb.json" in printed, failed.stderr
    done = shell.run(f"{start}\nmake -s destroy-aws\nstatus=$?\nkill %1\nexit $status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing tagged with it is left" in done.stdout
    assert not (state / "seed-lb.json").exists()  # destroy forgot it


def test_a_missing_package_outside_the_venv_says_how_to_run_it_again(tmp_path):
    """A Python that is not .venv's (here the one it was made from, without site-packages):
    the hint is `make setup`, then the same command with .venv/bin/python."""
    shell = Shell(tmp_path)
    python = getattr(sys, "_base_executable", sys.executable)
    failed = shell.run(f"{shlex.quote(python)} -S -m infra policy --unscoped")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    printed = printed_commands(failed.stderr)
    assert printed == ["make setup", ".venv/bin/python -m infra policy --unscoped"], \
        failed.stderr
    for command in printed:
        done = shell.run(command)
        assert done.returncode == 0, command + "\n" + done.stderr
    assert '"Resource": "*"' in done.stdout


def test_caddy_missing_outside_the_venv_says_how_to_run_it_again(tmp_path, free_port):
    """The same Python with .venv's packages but not .venv's bin/ (the Caddy there): the
    hint keeps the user's flags."""
    shell = Shell(tmp_path)
    python = getattr(sys, "_base_executable", sys.executable)
    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    flags = f"--lb-port {free_port} --first-address 127.{free_port % 200 + 20}.7.11"
    env = f"PYTHONPATH=$PYTHONPATH:{site} PATH=/usr/bin:/bin"
    failed = shell.run(f"{env} {shlex.quote(python)} -S -m infra local up {flags}")
    assert failed.returncode == 2, failed.stderr
    again = f".venv/bin/python -m infra local up {flags}"
    assert "Caddy" in failed.stderr and printed_commands(failed.stderr) == ["make setup", again]
    done = shell.run(again)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        shell.run(".venv/bin/python -m infra local down")


MOTO_EXAMPLES = [c for c in source_hints() if classify(c) == "printed"
                 and c.text.startswith("AWS_ENDPOINT_URL=http://127.0.0.1:5001")]


@pytest.mark.parametrize("command", MOTO_EXAMPLES, ids=[c.where for c in MOTO_EXAMPLES])
def test_a_moto_example_runs_with_the_moto_server_it_names(tmp_path, command, free_port):
    shell = Shell(tmp_path)
    port = str(free_port)
    env = command.text.split(" make ")[0]
    script = textwrap.dedent(f"""\
        .venv/bin/moto_server -H 127.0.0.1 -p 5001 > moto.log 2>&1 &
        {command.text}
        status=$?
        {env} make destroy-aws
        kill %1
        exit $status
        """).replace("5001", port)
    done = shell.run(script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "does not resolve" in done.stdout  # deployed into moto
    assert shell.off_machine() == ""


SEQUENCES = sequence_blocks()


@pytest.mark.parametrize("block", list(SEQUENCES))
def test_a_doc_block_whose_lines_depend_on_each_other_runs_as_one_script(tmp_path, block,
                                                                          free_port):
    shell = Shell(tmp_path)
    port = str(free_port)
    lines = [c.text for c in SEQUENCES[block] if classify(c) == "sequence"]
    skipped = [c.text for c in SEQUENCES[block] if classify(c) != "sequence"]
    assert all(allowed(Command(t, block)) for t in skipped), skipped
    done = shell.run("set -e\n" + "\n".join(lines).replace("5001", port), timeout=300)
    assert done.returncode == 0, "\n".join(lines) + "\n" + done.stdout + done.stderr
    assert shell.off_machine() == ""
    assert wait_until(lambda: not listening("127.0.0.1", int(port)), 10)


def test_the_app_and_the_transcript_in_docs_app_md(tmp_path, free_port):
    """`make run`, then each `$ curl` line of docs/app.md: its first output line is what
    the doc shows. The app's port is a free one (PORT=, as the doc says)."""
    shell = Shell(tmp_path)
    port = free_port
    transcript = next(cs for cs in doc_blocks().values()
                      if any(c.kind == "transcript" for c in cs))
    text = (Path(__file__).resolve().parents[1] / transcript[0].where.split(":")[0]).read_text()
    expected = dict(re.findall(r"^\$ (.+)\n(.+)$", text, flags=re.M))
    script = [f"PORT={port} make run > app.log 2>&1 &",
              f"until curl -s localhost:{port}/health > /dev/null; do sleep 0.2; done"]
    for command in transcript:
        script.append(f"echo {shlex.quote('>>> ' + command.text)}")
        script.append(command.text.replace("localhost:5000", f"localhost:{port}"))
        script.append("echo")
    script.append("kill %1")
    done = shell.run("\n".join(script), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = dict(re.findall(r"^>>> (.+)\n(.*)$", done.stdout, flags=re.M))
    assert set(answers) == {c.text for c in transcript}, done.stdout
    shown = {strip_comment(k).strip(): v for k, v in expected.items()}
    for command in transcript:
        assert answers[command.text].strip() == shown[command.text].strip(), done.stdout
    assert wait_until(lambda: not listening("127.0.0.1", port), 10)


def test_flask_development_server_as_docs_app_md_shows(tmp_path, free_port):
    shell = Shell(tmp_path)
    port = free_port
    line = next(c.text for cs in doc_blocks().values() for c in cs
                if c.text.startswith(".venv/bin/flask "))
    done = shell.run(f"FLASK_RUN_PORT={port} {line} > flask.log 2>&1 &\n"
                     f"for i in $(seq 100); do curl -s localhost:{port}/ && break; "
                     "sleep 0.2; done\nkill %1", timeout=60)
    assert done.stdout.strip() == "0", done.stdout + done.stderr
