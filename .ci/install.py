"""`make setup`: a .venv with exactly the locked packages of the groups a job needs.

    python3 .ci/install.py [--venv .venv] GROUP...   # runtime is always included
    python3 .ci/install.py --lock [UV-ARGS...]       # re-pin requirements.lock (make lock)

requirements.lock is the one lock: every package, pinned with its hashes, written by
`uv pip compile` from pyproject.toml's groups. Each entry's `# via` lines name what needs
it: `seed-lb (pyproject.toml)` is the runtime group, `seed-lb (pyproject.toml:local)` the
local group, and a package name is a parent package. A group's packages are its own pins
and everything below them; those exact lines are installed with --no-deps, so uv and pip
install the same files, with nothing resolved at install time.

uv does it in seconds. It is used from PATH, or else installed from PyPI into
.venv-tools/ (pinned and hash-checked by the lock's tools group). pip is the fallback, only
where uv cannot run; SEEDLB_INSTALLER=pip (or =uv) forces one. Only the standard library
is used here: this runs before any package is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
TOOLS = ROOT / ".venv-tools"
STATE_NAME = ".seedlb-setup.json"
PROJECT = "seed-lb"
RUNTIME = "runtime"
# The groups' own pins, for `make lock`: pyproject.toml's [dependency-groups] keys.
LOCK_PYTHON = "3.11"
# Groups whose pins conflict with the others' (LocalStack pins its own boto3 and brings a
# second `moto`): each is pinned alone into a lock of its own and installs into a venv of its
# own (`install.py --venv .venv-localstack localstack`), without the runtime group.
SEPARATE_LOCKS = {"localstack": ROOT / "requirements-localstack.lock"}


@dataclass
class Entry:
    """One requirement of the lock: its name, its lines (pin, marker, hashes), who needs it."""

    name: str
    pin: str
    hashes: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)  # package names
    groups: set[str] = field(default_factory=set)  # groups that pin it themselves

    def lines(self) -> str:
        return " \\\n    ".join([self.pin, *self.hashes]) + "\n"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
_GROUP = re.compile(rf"^{PROJECT} \(pyproject\.toml(?::([A-Za-z0-9._-]+))?\)$")


def parse_lock(text: str) -> list[Entry]:
    """The lock's entries in file order (a package resolved differently per Python version
    or platform has one entry per version, each with its marker)."""
    entries: list[Entry] = []
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw[0].isspace() and not line.startswith("#"):
            match = _NAME.match(line)
            if not match:
                raise ValueError(f"requirements.lock: cannot read {line!r}")
            entries.append(Entry(normalize(match.group(1)), line.removesuffix("\\").strip()))
            in_via = False
            continue
        if not entries:
            continue  # the header
        entry = entries[-1]
        if line.startswith("--hash="):
            entry.hashes.append(line.removesuffix("\\").strip())
        elif line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                _add_parent(entry, rest)
        elif line.startswith("#") and in_via:
            _add_parent(entry, line.lstrip("#").strip())
    return entries


def _add_parent(entry: Entry, who: str) -> None:
    group = _GROUP.match(who)
    if group:
        entry.groups.add(group.group(1) or RUNTIME)
    elif who.startswith("-r ") or who.startswith("-c "):
        pass
    else:
        entry.parents.add(normalize(who.split("[")[0].split(" ")[0]))


def select(entries: list[Entry], groups: set[str]) -> list[Entry]:
    """The entries the groups need: their own pins, then whatever those need, transitively."""
    unknown = groups - {g for e in entries for g in e.groups}
    if unknown:
        raise SystemExit(f"setup: no group {', '.join(sorted(unknown))} in requirements.lock "
                         f"(groups: {', '.join(sorted(all_groups(entries)))})")
    names = {e.name for e in entries if e.groups & groups}
    grew = True
    while grew:
        more = {e.name for e in entries if e.parents & names} - names
        names |= more
        grew = bool(more)
    return [e for e in entries if e.name in names]


def all_groups(entries: list[Entry]) -> set[str]:
    return {g for e in entries for g in e.groups}


# -- progress ------------------------------------------------------------------------------

class Step:
    """`setup: <what>... 1.2 s` on one line: the what first, the time when it is done."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        print(f"setup: {self.what}...", end=" ", flush=True)
        self.started = time.monotonic()
        return self

    def __exit__(self, kind, error, tb):
        took = time.monotonic() - self.started
        print(f"{took:.1f} s" if kind is None else f"failed after {took:.1f} s", flush=True)
        return False


class SetupFailed(Exception):
    pass


def run(argv: list[str], **kwargs) -> None:
    """Run a tool quietly; on failure, its output and the command become the error."""
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise SetupFailed(f"{' '.join(map(str, argv))} exited {done.returncode}:\n{output}")


# -- uv ------------------------------------------------------------------------------------

def uv_env() -> dict[str, str]:
    """uv trusts the system's certificate store, as pip does (a proxy's CA lives there);
    UV_NATIVE_TLS is that setting's name before uv 0.9."""
    env = dict(os.environ)
    env.setdefault("UV_SYSTEM_CERTS", "1")
    env.setdefault("UV_NATIVE_TLS", "1")
    return env


def _runs(uv: str) -> str | None:
    try:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.split()[1] if done.returncode == 0 and done.stdout.strip() else None


def pinned_uv(entries: list[Entry]) -> Entry | None:
    return next((e for e in entries if e.name == "uv"), None)


def find_uv(entries: list[Entry], *, pinned_only: bool = False) -> tuple[str, str] | None:
    """(path, version) of a uv that runs: PATH's, then .venv-tools', then one installed now
    from PyPI into .venv-tools with pip (the lock pins it with hashes). None if uv cannot
    run on this machine."""
    pin = pinned_uv(entries)
    want = pin.pin.split("==")[1].split(";")[0].strip() if pin else None
    on_path = shutil.which("uv")
    if on_path and (version := _runs(on_path)) and (not pinned_only or version == want):
        return on_path, version
    if pin is None:
        return None
    tools_uv = TOOLS / "bin" / "uv"
    if tools_uv.exists() and _runs(str(tools_uv)) == want:
        return str(tools_uv), want
    try:
        with Step(f"installing uv {want} into .venv-tools/ (pip, from PyPI)"), \
                tempfile.TemporaryDirectory() as scratch:
            shutil.rmtree(TOOLS, ignore_errors=True)
            requirements = Path(scratch, "uv.txt")
            requirements.write_text(pin.lines())
            run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                 "--quiet", "--no-deps", "--require-hashes", "--target", str(TOOLS),
                 "-r", str(requirements)])
    except SetupFailed as failure:
        print(f"setup: uv cannot be installed here, so pip installs instead:\n  "
              f"{str(failure).splitlines()[-1]}")
        return None
    version = _runs(str(tools_uv))
    if version is None:
        print("setup: uv was installed but does not run on this machine; pip installs instead")
        return None
    return str(tools_uv), version


# -- the venv ------------------------------------------------------------------------------

def lock_digest(lock: Path = LOCK) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def read_state(venv: Path) -> dict:
    try:
        state = json.loads((venv / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return state if (venv / "bin" / "python").exists() else {}


def up_to_date(venv: Path, groups: set[str], lock: Path = LOCK) -> bool:
    state = read_state(venv)
    return state.get("lock") == lock_digest(lock) and groups <= set(state.get("groups", []))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _usable(venv: Path) -> bool:
    python = venv_python(venv)
    if not (venv / "pyvenv.cfg").exists() or not python.exists():
        return False
    done = subprocess.run([str(python), "-c", "import sys; print(sys.version_info >= (3, 11))"],
                          capture_output=True, text=True)
    return done.stdout.strip() == "True"


def lock_of(groups: set[str]) -> Path:
    """The lock the groups install from: requirements.lock, or a separate group's own."""
    separate = groups & set(SEPARATE_LOCKS)
    if separate and groups - separate or len(separate) > 1:
        raise SetupFailed(f"{', '.join(sorted(separate))} installs alone, into a venv of its "
                          "own: `install.py --venv .venv-<group> <group>`")
    return SEPARATE_LOCKS[separate.pop()] if separate else LOCK


def install(venv: Path, groups: set[str], lock: Path = LOCK) -> None:
    entries = parse_lock(lock.read_text())
    if lock == LOCK:
        groups = {RUNTIME} | groups | set(read_state(venv).get("groups", []))
    wanted = select(entries, groups)
    entries = parse_lock(LOCK.read_text())  # uv's own pin is in the main lock
    forced = os.environ.get("SEEDLB_INSTALLER", "").strip().lower()
    if forced not in ("", "uv", "pip"):
        raise SetupFailed(f"SEEDLB_INSTALLER={forced!r}: use uv or pip (or leave it unset)")
    uv = None if forced == "pip" else find_uv(entries)
    if uv is None and forced == "uv":
        raise SetupFailed("SEEDLB_INSTALLER=uv, but uv cannot run here; unset it to use pip")
    tool = f"uv {uv[1]}" if uv else "pip"
    names = sorted({e.name for e in wanted})
    label = ", ".join(sorted(groups, key=lambda g: (g != RUNTIME, g)))

    if not _usable(venv):
        python = f"Python {sys.version.split()[0]}"
        with Step(f"creating {venv.name} ({python}, {'uv' if uv else 'venv'})"):
            if uv:
                run([uv[0], "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
                    env=uv_env())
            else:
                run([sys.executable, "-m", "venv", "--clear", str(venv)])
    (venv / STATE_NAME).unlink(missing_ok=True)  # until this install has finished
    requirements = venv / ".seedlb-requirements.txt"
    requirements.write_text(f"# What `make setup` installed: {lock.name}'s entries for "
                            f"{label}.\n" + "".join(e.lines() for e in wanted))
    installing = f"installing {len(names)} packages for {label}"
    try:
        with Step(f"{installing} ({tool})"):
            if not uv:
                _pip_sync(venv, requirements, set(names))
            else:  # sync: exactly these; what an older lock or group left is removed
                run([uv[0], "pip", "sync", "--quiet", "--require-hashes",
                     "--python", str(venv_python(venv)), str(requirements)], env=uv_env())
    except SetupFailed as failure:
        if not uv or forced == "uv":
            raise
        reason = str(failure).splitlines()
        print(f"setup: uv could not install ({reason[1] if len(reason) > 1 else reason[0]}); "
              "pip installs instead")
        tool = "pip"
        with Step(f"{installing} (pip)"):
            _pip_sync(venv, requirements, set(names))
    (venv / STATE_NAME).write_text(json.dumps(
        {"lock": lock_digest(lock), "groups": sorted(groups), "installer": tool}) + "\n")


def _pip_sync(venv: Path, requirements: Path, names: set[str]) -> None:
    python = str(venv_python(venv))
    if subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode:
        run([python, "-m", "ensurepip", "--default-pip"])
    quiet = ["--disable-pip-version-check", "--quiet"]
    run([python, "-m", "pip", "install", *quiet, "--no-deps", "--require-hashes",
         "-r", str(requirements)])
    listed = subprocess.run(
        [python, "-c", "import importlib.metadata as m; "
                       "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
        capture_output=True, text=True, check=True).stdout.split()
    extra = sorted({normalize(n) for n in listed} - names - {"pip", "setuptools", "wheel"})
    if extra:
        run([python, "-m", "pip", "uninstall", *quiet, "--yes", *extra])


# -- make lock -----------------------------------------------------------------------------

def lock(uv_args: list[str]) -> None:
    import tomllib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("dependency-groups", {})
    entries = parse_lock(LOCK.read_text()) if LOCK.exists() else []
    uv = find_uv(entries, pinned_only=True) or find_uv(entries)
    if uv is None:
        raise SetupFailed("make lock needs uv: `pip install uv`, then run it again")
    together = [g for g in groups if g not in SEPARATE_LOCKS]
    common = ["--universal", f"--python-version={LOCK_PYTHON}", "--generate-hashes",
              "--custom-compile-command=make lock", "--quiet", *uv_args]
    # uv keeps the pins a lock already has, unless told otherwise (--upgrade-package)
    jobs = [([RUNTIME, *together], LOCK,
             ["pyproject.toml", *[f"--group={g}" for g in together]])]
    jobs += [([g], SEPARATE_LOCKS[g], [f"--group=pyproject.toml:{g}"])
             for g in groups if g in SEPARATE_LOCKS]
    for names, path, sources in jobs:
        with Step(f"pinning {', '.join(names)} into {path.name} (uv {uv[1]})"):
            run([uv[0], "pip", "compile", *sources, *common, "-o", str(path)], cwd=ROOT,
                env=uv_env())
        print(f"setup: {len({e.name for e in parse_lock(path.read_text())})} packages "
              f"pinned in {path.name}")
    print("setup: commit pyproject.toml and the lock files together")


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        print(f"setup: this project needs Python 3.11 or newer, and {sys.executable} is "
              f"{sys.version.split()[0]}: run `make PYTHON=python3.11 ...`", file=sys.stderr)
        return 2
    venv = ROOT / ".venv"
    if argv[:1] == ["--venv"]:
        venv, argv = Path(argv[1]).resolve(), argv[2:]
    try:
        if argv[:1] == ["--lock"]:
            lock(argv[1:])
            return 0
        groups = set(argv)
        source = lock_of(groups)
        if up_to_date(venv, groups if source != LOCK else groups | {RUNTIME}, source):
            return 0
        install(venv, groups, source)
    except SetupFailed as failure:
        print(f"setup: {failure}\nsetup: fix the cause above and run the same command again",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsetup: interrupted; the next make command finishes the set-up",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
