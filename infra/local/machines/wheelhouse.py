"""The wheelhouse a booted instance installs the app's requirements from.

An instance on AWS runs `pip install -r app/requirements.txt` against PyPI. A booted
instance has no route off its veth, so the host downloads those wheels first, from the
entries of requirements.lock that app/requirements.txt names, with `--require-hashes`
(pip refuses a file whose sha256 is not in the lock), for the machine's platform (CPython
3.11, manylinux, this host's architecture), into the cache (`$SEEDLB_CACHE/wheelhouse/`,
one directory per set of entries). The machine's pip.conf then says `no-index` and
`find-links` to it, served over the veth (machines/imds.py), so the boot script's pip
line runs unchanged.

The host's pip is the one in the image (Debian's pip wheel, which ensurepip also uses in
the machine): the project's .venv is made by uv and has none.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.aws.userdata import APP_SOURCE, REPO_ROOT, REQUIREMENTS
from infra.errors import UserError

LOCK = REPO_ROOT / "requirements.lock"
PYTHON_VERSION = "3.11"  # bookworm's python3
GLIBC = 36  # bookworm's glibc 2.36: wheels for it and every older manylinux run there
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and options skipped)."""
    found = {}
    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def lock_entries(lock_text: str) -> dict[str, str]:
    """name -> the lock's whole entry (its `name==version` line and its --hash lines)."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in lock_text.splitlines() + [""]:
        if line and not line[0].isspace() and not line.startswith("#"):
            if current:
                match = _NAME.match(current[0])
                if match:
                    entries[canonical(match.group(1))] = "\n".join(current)
            current = [line]
        elif current and line.strip().startswith("--hash"):
            current.append(line)
        elif not line and current:
            match = _NAME.match(current[0])
            if match:
                entries[canonical(match.group(1))] = "\n".join(current)
            current = []
    return entries


def requirement_entries(requirements: str, lock_text: str) -> str:
    """The lock's entries for what requirements.txt names, at the same versions."""
    wanted = pins(requirements)
    entries = lock_entries(lock_text)
    missing = sorted(n for n in wanted if n not in entries)
    if missing:
        raise UserError(f"app/{REQUIREMENTS} names {', '.join(missing)}, which "
                        "requirements.lock does not pin: run `make lock`")
    locked = pins("\n".join(entries[n] for n in wanted))
    differ = sorted(f"{n} {wanted[n]} (lock: {locked[n]})" for n in wanted
                    if locked.get(n) != wanted[n])
    if differ:
        raise UserError(f"app/{REQUIREMENTS} and requirements.lock disagree: "
                        f"{', '.join(differ)}")
    return "\n".join(entries[n] for n in sorted(wanted)) + "\n"


def platforms(machine: str) -> list[str]:
    """pip's --platform options for a bookworm machine: pip does not widen manylinux_2_X to
    the older glibc versions by itself, so each is named."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC, 16, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return [option for tag in tags for option in ("--platform", tag)]


def pip_wheel(image_root: Path) -> Path:
    found = sorted((image_root / "usr/share/python-wheels").glob("pip-*.whl"))
    if not found:
        raise UserError(f"the image at {image_root} has no pip wheel (python3-pip-whl)")
    return found[-1]


def ensure(cache: Path, image_root: Path, say=print, app_source: Path = APP_SOURCE,
           lock: Path = LOCK) -> Path:
    """The wheelhouse directory for the app's requirements, downloaded if missing."""
    entries = requirement_entries((app_source / REQUIREMENTS).read_text(), lock.read_text())
    digest = hashlib.sha256(entries.encode()).hexdigest()[:12]
    target = cache / "wheelhouse" / digest
    if (target / ".complete").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    say(f"wheelhouse: downloading {len(pins(entries))} wheels (hashes from requirements.lock) "
        f"into {target}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
        reqs.write(entries)
    machine = os.uname().machine
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
            "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
            "--python-version", PYTHON_VERSION, "--implementation", "cp",
            *platforms(machine), "--dest", str(target),
            "-r", reqs.name]
    env = {**os.environ, "PYTHONPATH": str(pip_wheel(image_root))}
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    finally:
        os.unlink(reqs.name)
    if result.returncode != 0:
        raise UserError("wheelhouse: pip download failed: "
                        + (result.stderr or result.stdout).strip()[-1500:])
    (target / ".complete").write_text(entries)
    return target
