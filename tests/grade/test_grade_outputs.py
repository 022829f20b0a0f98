"""Where a class's grades go (--out, --gradescope), as instructors mistype it: the real CLI,
a real roster, real loopback setups that count the connections they get.

A path that cannot take the gradebook is refused before the first request (the setups see
no connection); a device, a FIFO or a symlink is written through, not replaced; a regular
file is still replaced atomically; and when the write fails all the same, the gradebook
reaches the user with a line that says where."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading

import classroom
import pytest
from classroom import ROOT, grade_cli, read_gradebook

from infra.grade.gradebook import COLUMNS

pytestmark = [pytest.mark.integration]


@pytest.fixture
def setup():
    one = classroom.start_setup("correct", 0)
    yield one
    one.close()


@pytest.fixture
def roster(tmp_path, setup):
    path = tmp_path / "class.csv"
    classroom.write_roster([setup], path)
    return path


def refused_before_grading(proc, setup, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert setup.connections == 0  # checked before the first request


def test_out_naming_the_roster_is_refused_and_the_roster_kept(tmp_path, roster, setup):
    before = roster.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(roster)
    hard = tmp_path / "hard.csv"
    os.link(roster, hard)
    for out in (roster, tmp_path / "." / ".." / tmp_path.name / "class.csv", link, hard):
        proc, _ = grade_cli("--roster", str(roster), "--out", str(out))
        refused_before_grading(proc, setup, "--out", "is the --roster file itself")
    assert roster.read_bytes() == before


def test_out_naming_the_scoring_file_is_refused(tmp_path, roster, setup):
    points = tmp_path / "points.toml"
    points.write_text("[points]\nbody = 30\n")
    proc, _ = grade_cli("--roster", str(roster), "--scores", str(points), "--out", str(points))
    refused_before_grading(proc, setup, "is the --scores file itself")
    assert points.read_text() == "[points]\nbody = 30\n"


def test_out_naming_a_folder_is_refused_before_grading(tmp_path, roster, setup):
    (tmp_path / "grades").mkdir()
    proc, _ = grade_cli("--roster", str(roster), "--out", str(tmp_path / "grades"))
    refused_before_grading(proc, setup, "is a folder")


@pytest.mark.parametrize("out", ["/proc/grades.csv", "/nonexistent-dir/grades.csv"])
def test_out_in_a_folder_that_takes_no_file_is_refused_before_grading(roster, setup, out):
    # /proc refuses new files even to root, for whom os.access() says yes to everything
    proc, _ = grade_cli("--roster", str(roster), "--out", out)
    refused_before_grading(proc, setup, "--out")


def test_gradescope_naming_a_folder_is_refused_before_grading(tmp_path, setup):
    proc, _ = grade_cli(setup.address, "--gradescope", str(tmp_path))
    refused_before_grading(proc, setup, "--gradescope", "is a folder")


def test_a_regular_file_is_replaced_atomically_and_a_symlink_kept(tmp_path, roster, setup):
    out = tmp_path / "grades.csv"
    out.write_text("old\n")
    out.chmod(0o640)
    inode = out.stat().st_ino
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_ino != inode  # a new file renamed over it, never half-written
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert read_gradebook(out)[0] == COLUMNS
    target = tmp_path / "kept" / "real.csv"
    target.parent.mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    proc, _ = grade_cli("--roster", str(roster), "--out", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and read_gradebook(target)[1][0]["verdict"] == "PASS"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class.csv", "grades.csv", "kept",
                                                          "link.csv"]  # no temp file left


def test_a_fifo_is_written_through(tmp_path, roster, setup):
    fifo = tmp_path / "grades.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    proc, _ = grade_cli("--roster", str(roster), "--out", str(fifo))
    reader.join(10)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert got and got[0].startswith("student,address,verdict") and ",PASS," in got[0]


def test_a_symlink_to_dev_stdout_is_written_through(tmp_path, roster, setup):
    link = tmp_path / "stdout.csv"
    link.symlink_to("/dev/stdout")
    proc, _ = grade_cli("--roster", str(roster), "--out", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert proc.stdout.startswith("student,address,verdict") and ",PASS," in proc.stdout
    assert "students graded" in proc.stderr  # the summary moved out of the CSV's way
    results = tmp_path / "results.json"
    results.symlink_to("/dev/stdout")
    proc, _ = grade_cli(setup.address, "--gradescope", str(results))
    assert proc.returncode == 0, proc.stderr
    assert results.is_symlink() and '"score": 90' in proc.stdout


def test_a_full_disk_still_gives_the_gradebook_and_says_where(tmp_path, roster, setup):
    full = tmp_path / "full.csv"
    full.symlink_to("/dev/full")  # every write: ENOSPC
    proc, _ = grade_cli("--roster", str(roster), "--out", str(full))
    assert proc.returncode == 2, proc.stderr
    assert "No space left on device" in proc.stderr
    assert "the gradebook is on stdout instead" in proc.stderr
    assert "student,address,verdict" in proc.stdout and ",PASS," in proc.stdout
    assert full.is_symlink()


def test_a_write_that_fails_leaves_the_gradebook_next_to_it(tmp_path, roster, setup):
    # --out /dev/stdout while stdout is /dev/full: the text goes to a file next to... /dev
    # is no place for it, so the temp folder; the line names the file.
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/stdout")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "infra", "grade", "--roster", str(roster),
                               "--out", str(link), "--allow-private"], cwd=ROOT, env=env,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    saved = [p for p in tmp_path.iterdir() if p.name.startswith("out.csv.unsaved-")]
    assert len(saved) == 1 and f"the gradebook is in {saved[0]} instead" in proc.stderr
    assert read_gradebook(saved[0])[1][0]["verdict"] == "PASS"


UNSHARE = shutil.which("unshare")


@pytest.mark.skipif(os.geteuid() != 0 or not UNSHARE, reason="needs root and unshare(1)")
@pytest.mark.parametrize(("device", "words"), [
    ("/dev/stdout", ["gradebook: /dev/stdout"]),
    ("/dev/full", ["No space left on device", "the gradebook is on stdout instead"]),
])
def test_the_real_device_paths(tmp_path, roster, setup, device, words):
    # The literal /dev paths, in a mount namespace with a /dev of its own: a regression that
    # replaced the device with a file would only harm that copy.
    script = (
        "set -e; mount -t tmpfs tmpfs /dev; mknod -m 666 /dev/null c 1 3; "
        "mknod -m 666 /dev/full c 1 7; ln -s /proc/self/fd /dev/fd; "
        "ln -s /proc/self/fd/1 /dev/stdout; "
        f"status=0; {sys.executable} -m infra grade --roster {roster} --out {device} "
        f"--allow-private || status=$?; ls -l {device} >&2; exit $status"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([UNSHARE, "--mount", "--propagation", "private", "bash", "-c",
                           script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    if "Operation not permitted" in proc.stderr and "mount" in proc.stderr:
        pytest.skip("this container cannot make a mount namespace")
    for word in words:
        assert word in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "student,address,verdict" in proc.stdout and ",PASS," in proc.stdout
    listed = proc.stderr.strip().splitlines()[-1]
    assert listed[0] in "lc", listed  # still the link, or the device: not a regular file
