"""README starts with the assignment: its first screen holds the student's whole path, and
every page under docs/ is reachable from it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from infra.local.processes import free_port, listening, wait_until

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


def recipe() -> str:
    section = README[README.index("## Without an AWS account"):]
    block = section[section.index("```sh\n") + 6:]
    return block[:block.index("```")]


def test_the_recipe_without_an_account_sets_what_a_fresh_shell_lacks():
    commands = [line.split("#")[0].strip() for line in recipe().splitlines()]
    assert commands[0] == "make setup"
    assert commands[1].startswith(".venv/bin/moto_server -H 127.0.0.1 -p 5001")
    for setting in ("AWS_ENDPOINT_URL=http://127.0.0.1:5001", "AWS_REGION=",
                    "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="):
        assert any(c.startswith("export ") and setting in c for c in commands), setting
    assert commands[-4:] == ["make deploy-aws", "make status", "make destroy-aws", "kill %1"]


@pytest.mark.integration
def test_the_recipe_without_an_account_runs_as_written(tmp_path):
    """The block itself, in bash, in an environment as bare as a fresh shell's (no AWS_*, no
    profile), from a checkout of its own so that its .state/ is not this one's. Only the
    port changes, to a free one."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Makefile", "app", "infra", ".ci", "pyproject.toml", "requirements.lock",
                 ".venv"):
        (checkout / name).symlink_to(REPO / name)
    port = str(free_port())
    script = "set -e\n" + recipe().replace("5001", port)
    home = tmp_path / "home"
    home.mkdir()  # no ~/.aws: no profile, no region, no keys
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    done = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "does not resolve" in out  # the deploy summary, against an emulator
    assert "destroyed" in out.lower() or "deleted" in out.lower(), out
    assert not (checkout / ".state" / "seed-lb.json").exists()  # destroy removed it
    assert wait_until(lambda: not listening("127.0.0.1", int(port)), 10)  # kill %1 stopped moto


def test_the_set_up_lines_shown_count_the_packages_of_the_lock():
    from test_dependencies import ENTRIES, install

    shown = re.search(r"installing (\d+) packages for runtime, local", README)
    assert shown, "README shows make setup's lines"
    wanted = {e.name for e in install.select(ENTRIES, {"runtime", "local"})}
    assert int(shown.group(1)) == len(wanted), f"make setup installs {len(wanted)} packages"
