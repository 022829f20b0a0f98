"""The state file `.state/<stack>.json`: what deploy built, for status, grade and doctor.

It is a convenience for the other commands, never the source of truth: deploy and destroy
find the stack's resources by their tags, so a lost state file changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def state_path(state_dir: str | os.PathLike, stack: str) -> Path:
    return Path(state_dir) / f"{stack}.json"


def write_state(state_dir: str | os.PathLike, stack: str, state: dict) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    path = state_path(state_dir, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_state(state_dir: str | os.PathLike, stack: str) -> dict | None:
    path = state_path(state_dir, stack)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None  # a damaged file is as good as a lost one: the tags still say it all


def remove_state(state_dir: str | os.PathLike, stack: str) -> bool:
    try:
        state_path(state_dir, stack).unlink()
        return True
    except FileNotFoundError:
        return False
