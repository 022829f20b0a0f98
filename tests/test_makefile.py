"""`make` alone is a newcomer's first command: its first group is the assignment, in the
order a student walks it, and every target with a description is in some group."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def groups() -> dict[str, list[str]]:
    out = subprocess.run(["make", "--no-print-directory", "-s", "help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {}
    title = None
    for line in out.splitlines():
        target = re.match(r"^  make (\S+)", line)
        if target:
            assert title, f"{line!r} is listed outside any group"
            found[title].append(target.group(1))
        elif line.strip() and not line.startswith("usage:"):
            title = line.strip()
            found[title] = []
    return found


def test_the_first_group_is_the_students_path():
    first_title, first = next(iter(groups().items()))
    assert first_title == "The assignment"
    assert first[:6] == ["test-local", "deploy-aws", "grade", "doctor", "status",
                         "destroy-aws"]


def test_every_described_target_is_listed_once():
    text = (REPO / "Makefile").read_text()
    described = re.findall(r"^([a-z-]+):.*## ", text, flags=re.M)
    listed = [t for targets in groups().values() for t in targets]
    assert sorted(listed) == sorted(described)
    assert len(listed) == len(set(listed))
    assert {"test", "lint", "lock", "setup"} <= set(groups()["Development"])
