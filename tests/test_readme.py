"""README starts with the assignment: its first screen holds the student's whole path, and
every page under docs/ is reachable from it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from fresh_shell import Shell

from infra.local.processes import listening, wait_until

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
FIRST_SCREEN = "\n".join(README.splitlines()[:60])


def test_the_first_screen_holds_the_two_commands_and_the_assignment_on_aws():
    for words in ("make test-local", "make test ", "make deploy-aws", "make grade LB=",
                  "make destroy-aws", "aws configure", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION=us-east-1",
                  "an hour", "docs/troubleshooting.md"):
        assert words in FIRST_SCREEN, f"README's first 60 lines do not say {words!r}"
    steps = re.findall(r"^(\d)\. ", FIRST_SCREEN, flags=re.M)
    assert steps == ["1", "2", "3", "4", "5"], "the AWS path is five numbered steps"


def test_every_page_under_docs_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README))
    pages = {f"docs/{p.name}" for p in (REPO / "docs").iterdir() if p.suffix in (".md", ".png")}
    assert pages - linked == set()


def test_troubleshooting_starts_from_the_seeds_faq():
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    first_heading = re.findall(r"^## (.+)$", text, flags=re.M)[0]
    assert "FAQ" in first_heading
    assert [int(n) for n in re.findall(r"^(\d)\. \*\*", text, flags=re.M)] == list(range(1, 8))


def recipes() -> list[str]:
    """The fenced blocks of the section "Without an AWS account"."""
    section = README[README.index("## Without an AWS account"):]
    section = section[:section.index("\n## ")]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines()]


def test_the_recipe_without_an_account_has_a_grade_step():
    testbed, moto = recipes()
    assert commands(testbed) == ["make local-up", "make status", "make doctor",
                                 "make grade LB=127.0.0.1:8080", "make local-down"]
    steps = commands(moto)
    assert steps[0] == "make setup"
    assert steps[1].startswith(".venv/bin/moto_server -H 127.0.0.1 -p 5001")
    for setting in ("AWS_ENDPOINT_URL=http://127.0.0.1:5001", "AWS_REGION=",
                    "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="):
        assert any(c.startswith("export ") and setting in c for c in steps), setting
    assert steps[-4:] == ["make deploy-aws", "make status", "make destroy-aws", "kill %1"]


@pytest.mark.integration
def test_the_recipe_without_an_account_ends_in_pass_on_loopback_only(tmp_path, free_port):
    """The first block in a fresh shell, under the loopback guard: its grade step says PASS,
    and no process it started tried to reach anything off this machine. Only the load
    balancer's port and the instances' addresses change, to free ones."""
    shell = Shell(tmp_path)
    port = free_port
    first = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.11"
    script = "set -e\n" + recipes()[0].replace(
        "make local-up ", f"make local-up ARGS='--lb-port {port} --first-address {first}' "
    ).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    done = shell.run(script)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"^PASS$", done.stdout, flags=re.M), out  # the grader's last line
    assert "doctor: OK" in done.stdout, out
    assert shell.off_machine() == "", shell.off_machine()
    assert not listening("127.0.0.1", port)  # local-down stopped it all
    assert not (shell.checkout / ".state" / "seed-lb-local.json").exists()


@pytest.mark.integration
def test_the_recipe_with_a_bare_moto_server_runs_as_written(tmp_path, free_port):
    """The second block, in a fresh shell, under the loopback guard. Only the port changes,
    to a free one."""
    shell = Shell(tmp_path)
    port = str(free_port)
    done = shell.run("set -e\n" + recipes()[1].replace("5001", port))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "does not resolve" in out  # the deploy summary, against an emulator
    assert "destroyed" in out.lower() or "deleted" in out.lower(), out
    assert shell.off_machine() == "", shell.off_machine()
    assert not (shell.checkout / ".state" / "seed-lb.json").exists()  # destroy removed it
    assert wait_until(lambda: not listening("127.0.0.1", int(port)), 10)  # kill %1 stopped moto


def test_the_set_up_lines_shown_count_the_packages_of_the_lock():
    from test_dependencies import ENTRIES, install

    shown = re.search(r"installing (\d+) packages for runtime, local", README)
    assert shown, "README shows make setup's lines"
    wanted = {e.name for e in install.select(ENTRIES, {"runtime", "local"})}
    assert int(shown.group(1)) == len(wanted), f"make setup installs {len(wanted)} packages"
