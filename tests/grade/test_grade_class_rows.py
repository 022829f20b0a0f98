"""A roster's rows as instructors and students fill them: one load balancer named by several
rows, cells that are too large or carry control characters, a student twice, a body
labelled JSON. The real CLI, a real roster file, real loopback setups."""

from __future__ import annotations

import classroom
import pytest
from classroom import grade_cli, read_gradebook

from infra.grade.grader import MAX_REQUESTS

pytestmark = [pytest.mark.integration]


@pytest.fixture
def setups():
    made = []

    def start(kind="correct", **kw):
        made.append(classroom.start_setup(kind, len(made), **kw))
        return made[-1]

    yield start
    for setup in made:
        setup.close()


def write(path, rows, header="student,address,instances"):
    path.write_text(header + "\r\n" + "".join(f"{line}\r\n" for line in rows),
                    encoding="utf-8", newline="")
    return path


def test_six_rows_naming_one_load_balancer_are_graded_once(tmp_path, setups):
    lb = setups()
    port = lb.address.split(":")[1]
    spellings = [lb.address, f"http://{lb.address}/", f"HTTP://127.0.0.1:{port}",
                 f"127.0.0.1:{port}/", f"http://127.0.0.1:{port}", f" {lb.address} "]
    roster = write(tmp_path / "class.csv", [f"s{i},{a}," for i, a in enumerate(spellings)])
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [r["verdict"] for r in rows] == ["PASS"] * 6, [r["reasons"] for r in rows]
    assert rows[0]["notes"].startswith("shared with rows 3, 4, 5, 6, 7")
    assert rows[5]["notes"].startswith("shared with rows 2, 3, 4, 5, 6")
    # one grade's worth of requests reached the load balancer, and the summary says so
    single = setups()
    solo, _ = grade_cli(single.address, "--timeout", "2")
    assert solo.returncode == 0, solo.stdout
    assert lb.requests <= MAX_REQUESTS and abs(lb.requests - single.requests) <= 4, \
        (lb.requests, single.requests)
    assert f"requests sent: {lb.requests}" in proc.stdout
    assert "shared addresses" in proc.stdout and "rows 2, 3, 4, 5, 6, 7" in proc.stdout


def test_one_load_balancer_with_different_instances_is_graded_in_turn(tmp_path, setups):
    # two students share a load balancer but give different instances: two grades, never at
    # once. Each grade POSTs numbers near its own random base (base+0..3, +100, +200): the
    # order the load balancer got them in shows whether two grades ran side by side.
    lb = setups(with_instances=True, delay=0.01)
    first, second = lb.instances
    roster = write(tmp_path / "class.csv", [f'a,{lb.address},"{first}"',
                                            f'b,{lb.address},"{second}"',
                                            f'c,{lb.address},"{first}"'])
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [r["verdict"] for r in rows] == ["PASS"] * 3, [r["reasons"] for r in rows]
    posted = lb.servers[0].posted
    bases: list[int] = []
    for num in posted:
        if not any(abs(num - b) < 1000 for b in bases):
            bases.append(num)
    runs = [next(b for b in bases if abs(n - b) < 1000) for n in posted]
    changes = sum(1 for a, b in zip(runs, runs[1:], strict=False) if a != b)
    assert len(bases) == 2 and changes == 1, posted  # grade one, then grade two
    assert "shared with rows 4" in rows[0]["notes"]
    assert "same load balancer as rows 3 (other instances)" in rows[0]["notes"]


def test_an_oversized_cell_fails_its_row_only(tmp_path, setups):
    lb = setups()
    roster = tmp_path / "class.csv"
    roster.write_text("student,address\r\n"
                      f"ann,{lb.address}\r\n"
                      f"bob,{'x' * 1_000_000}.example.com\r\n"
                      f"{'c' * 200_000},{lb.address}\r\n"
                      f"dan,{lb.address}\r\n", encoding="utf-8", newline="")
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [r["verdict"] for r in rows] == ["PASS", "FAIL", "FAIL", "PASS"]
    assert rows[1]["reasons"].startswith("cell-too-large: 'address' has 1,000,012 characters")
    assert rows[2]["reasons"].startswith("cell-too-large: 'student' has 200,000 characters")
    assert all(len(value) < 3000 for row in rows for value in row.values())


def test_control_characters_are_escaped_in_every_cell(tmp_path, setups):
    lb = setups()
    roster = tmp_path / "class.csv"
    roster.write_bytes(b'student,address\r\nnul\x00name,' + lb.address.encode() + b'\r\n'
                       b'"esc\x1b[2J\tline\nbreak",bad\x07address\r\n')
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text(encoding="utf-8")
    assert not any(ch in text for ch in "\x00\x1b\x07\t\n".replace("\n", "")), repr(text)
    assert text.count("\n") == 3  # the header and two rows: no line break inside a cell
    _, rows = read_gradebook(out)
    assert rows[0]["student"] == "nul\\x00name" and rows[0]["verdict"] == "PASS"
    assert rows[1]["student"] == "esc\\x1b[2J\\tline\\nbreak"
    assert rows[1]["address"] == "bad\\x07address"
    assert "\\x07" in rows[1]["reasons"] and "\x07" not in rows[1]["reasons"]


def test_duplicate_student_ids_are_reported(tmp_path, setups):
    one, two = setups(), setups()
    roster = write(tmp_path / "class.csv", [f"ann,{one.address},", f"bob,{two.address},",
                                            f"Ann ,{two.address},", "carl,,"])
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "duplicate student ids" in proc.stdout and "'ann': rows 2, 4" in proc.stdout
    _, rows = read_gradebook(out)
    assert "duplicate student id: also in rows 4" in rows[0]["notes"]
    assert "duplicate student id: also in rows 2" in rows[2]["notes"]
    assert "duplicate" not in rows[1]["notes"] + rows[3]["notes"]


def test_a_body_labelled_json_passes_with_a_warning(tmp_path, setups):
    # FastAPI's `return seed`: 100 as application/json. The course's grader compares the
    # text and passes it; so does this one, with a warning, for no points unless given some.
    lb, plain = setups("json-number"), setups()
    roster = write(tmp_path / "class.csv", [f"ann,{lb.address},", f"bob,{plain.address},"])
    out = tmp_path / "grades.csv"
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--timeout", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [(r["verdict"], r["score"], r["body"]) for r in rows] == [("PASS", "90", "PASS")] * 2
    assert rows[0]["notes"].startswith("warning json-content-type: body `")
    assert "FastAPI" in rows[0]["notes"] and rows[1]["notes"] == ""
    assert "warning (a PASS)" in proc.stdout and "json-content-type" in proc.stdout
    points = tmp_path / "points.toml"
    points.write_text("[warnings]\njson-content-type = 5\n")
    proc, _ = grade_cli("--roster", str(roster), "--out", str(out), "--scores", str(points))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_gradebook(out)
    assert [(r["verdict"], r["score"]) for r in rows] == [("PASS", "85"), ("PASS", "90")]
