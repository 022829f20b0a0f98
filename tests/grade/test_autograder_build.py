"""The Gradescope autograder, built and run as an instructor would: a clean clone of this
repository, the zip made with the commands docs/instructors.md gives, unpacked the way
Gradescope does, `setup.sh` into a temporary AUTOGRADER_ROOT (packages from the package
index, hash-checked), then `run_autograder` on a submission naming the project's own app
twice behind Caddy on loopback. results.json must say 100 of 100.

It tests what is committed (git archive HEAD), as CI does on its clean clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long]
ROOT = Path(__file__).resolve().parents[2]


def recipe() -> str:
    """docs/instructors.md's fenced commands that build autograder.zip."""
    docs = (ROOT / "docs" / "instructors.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", docs, re.DOTALL)
    found = [b for b in blocks if "autograder.zip" in b and "git archive" in b]
    assert len(found) == 1, "docs/instructors.md must give one recipe for autograder.zip"
    return found[0]


def unzip_as_gradescope(archive: Path, source: Path) -> None:
    """Into /autograder/source, with the modes the zip records (as unzip(1) keeps them)."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            z.extract(info, source)
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                os.chmod(source / info.filename, stat.S_IMODE(mode))


@pytest.fixture
def clean_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True,
                   capture_output=True, timeout=120)
    return clone


def test_the_zip_builds_from_a_clean_clone_and_grades_100(clean_clone, tmp_path, real_app,
                                                           caddy):
    # 1. the instructor builds the zip, exactly as the docs say
    built = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe()], cwd=clean_clone,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    archive = clean_clone / "autograder.zip"
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        mode = z.getinfo("run_autograder").external_attr >> 16
    assert {"setup.sh", "run_autograder", "seed-lb/requirements.lock",
            "seed-lb/.ci/install.py", "seed-lb/infra/grade/cli.py"} <= names
    assert mode & stat.S_IXUSR, "run_autograder must stay executable"
    assert not any(n.startswith("seed-lb/.venv") for n in names)

    # 2. Gradescope unpacks it and runs setup.sh once
    root = tmp_path / "autograder"
    unzip_as_gradescope(archive, root / "source")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDLB_", "PYTHON"))}
    env.update(AUTOGRADER_ROOT=str(root))
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert f"seed-lb grader installed in {root}/venv" in setup.stdout
    python = root / "venv" / "bin" / "python"
    listed = subprocess.run([str(python), "-c", "import importlib.metadata as m; print('\\n'"
                             ".join(sorted(d.metadata['Name'].lower() for d in "
                             "m.distributions())))"], capture_output=True, text=True,
                            check=True).stdout.split()
    # what .ci/install.py installed: the lock's runtime entries, each with its hashes
    installed = (root / "venv" / ".seedlb-requirements.txt").read_text()
    assert installed.startswith("# What `make setup` installed: requirements.lock's entries "
                                "for runtime.\n")
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==", installed, re.MULTILINE | re.IGNORECASE)
    assert installed.count("--hash=sha256:") >= len(pins) > 5
    normal = {re.sub(r"[-_.]+", "-", n).lower() for n in listed} - {"pip", "setuptools"}
    assert normal == {re.sub(r"[-_.]+", "-", n).lower() for n in pins}
    assert "boto3" in normal and "pytest" not in normal and "moto" not in normal

    # 3. a student submits the DNS name of a correct stack, and its instances
    instances = [real_app("i-aaa"), real_app("i-bbb")]
    lb = caddy(instances)
    (root / "submission").mkdir()
    (root / "submission" / "lb.txt").write_text(
        f"http://{lb}/\n{','.join(map(str, instances))}\n")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    env["SEEDLB_ALLOW_PRIVATE"] = "1"  # loopback stands in for the internet here
    graded = subprocess.run([str(root / "run_autograder")], env=env, cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    doc = json.loads((root / "results" / "results.json").read_text())
    assert doc["score"] == 100 == sum(t["max_score"] for t in doc["tests"]), doc
    assert [t["status"] for t in doc["tests"]] == ["passed"] * 6
    assert "PASS" in graded.stdout.splitlines()[-1]
