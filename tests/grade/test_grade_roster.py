"""Reading a roster, scoring a report, and Gradescope's document: the pieces of a class run."""

from __future__ import annotations

import io
import json

import pytest

from infra.errors import UserError
from infra.grade.report import Check
from infra.grade.roster import read_roster
from infra.grade.scoring import DEFAULT_POINTS, load_scheme, score, total


def write(tmp_path, data: bytes | str, name="roster.csv"):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_a_spreadsheet_export_with_bom_crlf_and_quotes(tmp_path):
    path = write(tmp_path, b'\xef\xbb\xbfName,STUDENT , Address,Instances\r\n'
                           b'x,"Doe, Jane",lb-1.us-east-1.elb.amazonaws.com,"3.3.3.3, 4.4.4.4"\r\n'
                           b'\r\n'
                           b'y,"multi\r\nline",http://lb-2/,\r\n'
                           b'z,short\r\n')
    students = read_roster(path)
    assert [(s.student, s.address, s.instances) for s in students] == [
        ("Doe, Jane", "lb-1.us-east-1.elb.amazonaws.com", "3.3.3.3, 4.4.4.4"),
        ("multi\nline", "http://lb-2/", ""),
        ("short", "", ""),  # a short row: the missing cells are empty, the row is kept
    ]
    assert [s.line for s in students] == [2, 5, 6]


def test_semicolon_separated_export(tmp_path):
    path = write(tmp_path, "student;address\nann;lb-1.example.com\n")
    assert [(s.student, s.address) for s in read_roster(path)] == [("ann", "lb-1.example.com")]


@pytest.mark.parametrize(("data", "words"), [
    ("student,dns\nann,lb\n", ["no 'address' column", "'student', 'dns'"]),
    ("name,url\n", ["no 'student' and no 'address'", "'name', 'url'"]),
    ("", ["is empty"]),
    (b"student,address\n\xff\xfe,x\n", ["not UTF-8"]),
])
def test_a_roster_that_cannot_be_one_is_a_usage_error(tmp_path, data, words):
    with pytest.raises(UserError) as err:
        read_roster(write(tmp_path, data))
    assert err.value.exit_code == 2
    for word in words:
        assert word in str(err.value), str(err.value)


def test_missing_roster_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_roster(tmp_path / "nope.csv")


def checks(*statuses):
    keys = ["connect", "get_200", "body", "post", "spread", "instances"]
    return [Check(i + 1, k, status=s) for i, (k, s) in enumerate(zip(keys, statuses,
                                                                    strict=True))]


def test_default_scheme_full_marks_without_instances_and_with():
    scheme = load_scheme(None)
    assert scheme.points == DEFAULT_POINTS
    all_pass = checks("PASS", "PASS", "PASS", "PASS", "PASS", "SKIP")
    assert total(score(all_pass, scheme, instances_given=False)) == (90, 90)
    assert total(score(all_pass, scheme, instances_given=True)) == (90, 100)
    body_fails = checks("PASS", "PASS", "FAIL", "PASS", "PASS", "SKIP")
    assert total(score(body_fails, scheme, instances_given=False)) == (70, 90)


def test_a_scheme_file_in_toml_or_json(tmp_path):
    toml = write(tmp_path, "[points]\nbody = 50\ninstances = 0\n", "p.toml")
    assert load_scheme(toml).points == {**DEFAULT_POINTS, "body": 50, "instances": 0}
    as_json = write(tmp_path, json.dumps({"connect": 2.5}), "p.json")
    assert load_scheme(as_json).points["connect"] == 2.5
    bare_toml = write(tmp_path, "spread = 30\n", "p.txt")
    assert load_scheme(bare_toml).points["spread"] == 30


@pytest.mark.parametrize(("text", "words"), [
    ("[points]\nspeed = 5\n", ["unknown check", "'speed'", "connect, get_200"]),
    ("body = -1\n", ["body = -1", "0 or more"]),
    ('body = "ten"\n', ["not a number"]),
    ("body = true\n", ["not a number"]),
    ("{not toml, not json", ["neither TOML nor JSON"]),
])
def test_a_bad_scheme_file_is_a_usage_error(tmp_path, text, words):
    with pytest.raises(UserError) as err:
        load_scheme(write(tmp_path, text, "p.toml"))
    for word in words:
        assert word in str(err.value), str(err.value)


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _run_with(done: int, of: int):
    from infra.grade.gradebook import ClassRun, GradebookRow
    from infra.grade.roster import Student

    run = ClassRun([Student(i + 2, f"s{i}", "x") for i in range(of)])
    for i in range(done):
        run.rows[i] = GradebookRow(f"s{i}", "x", "PASS" if i % 2 == 0 else "FAIL", 0, 0, {}, [], "")
    return run


def test_progress_rewrites_one_line_on_a_terminal():
    from infra.grade.gradebook import ProgressLine

    stream = _Stream(tty=True)
    progress = ProgressLine(stream)
    progress(_run_with(1, 3), 0.1)
    progress(_run_with(2, 3), 0.2)
    progress.close()  # interrupted: the open line is ended
    assert stream.getvalue() == ("\rgraded 1/3  PASS 1  FAIL 0  0.1 s"
                                 "\rgraded 2/3  PASS 1  FAIL 1  0.2 s\n")


def test_progress_in_a_log_is_a_line_every_few_seconds_and_at_the_end():
    from infra.grade.gradebook import ProgressLine

    stream = _Stream(tty=False)
    progress = ProgressLine(stream, every=5)
    progress(_run_with(1, 3), 0.1)
    progress(_run_with(2, 3), 1.0)  # too soon after the last: nothing
    progress(_run_with(3, 3), 1.5)  # the end: always
    progress.close()
    assert stream.getvalue().splitlines() == ["graded 1/3  PASS 1  FAIL 0  0.1 s",
                                              "graded 3/3  PASS 2  FAIL 1  1.5 s"]
