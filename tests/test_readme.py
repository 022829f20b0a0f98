"""README starts with the assignment: its first screen holds the student's whole path, and
every page under docs/ is reachable from it."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_the_recipe_without_an_account_sets_what_a_fresh_shell_lacks():
    """It runs as written in a fresh shell (checked by hand from a fresh clone under
    `env -i`): set-up first, then the endpoint, a region and keys for moto."""
    section = README[README.index("**Without an AWS account**"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands[0] == "make setup"
    assert commands[1].startswith(".venv/bin/moto_server -H 127.0.0.1 -p 5001")
    for setting in ("AWS_ENDPOINT_URL=http://127.0.0.1:5001", "AWS_REGION=",
                    "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="):
        assert any(c.startswith("export ") and setting in c for c in commands), setting
    assert commands[-4:] == ["make deploy-aws", "make status", "make destroy-aws", "kill %1"]
