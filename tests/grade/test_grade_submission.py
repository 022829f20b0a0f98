"""Gradescope submissions as students make them, through the real run_autograder script: a
zip from macOS, Notepad's "Unicode", a 50 MB file, a first line of 200 KiB, a line that
starts with '-', `none` for the instances. Each gets a grade or a message written for the
student in results.json, and run_autograder exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import time

import classroom
import pytest
from classroom import ROOT

pytestmark = [pytest.mark.integration]
AUTOGRADER = ROOT / "infra" / "grade" / "autograder"


@pytest.fixture(scope="module")
def lb():
    setup = classroom.start_setup("correct", 0, with_instances=True)
    yield setup
    setup.close()


def run_autograder(tmp_path, files: dict[str, bytes], allow_private=True):
    """files: path inside the submission -> content. The results.json document, the run."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "source").mkdir()
    (root / "venv").symlink_to(ROOT / ".venv")
    for name, content in files.items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHONPATH=str(ROOT))
    if allow_private:
        env["SEEDLB_ALLOW_PRIVATE"] = "1"
    started = time.monotonic()
    proc = subprocess.run([str(AUTOGRADER / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=60)
    proc.seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return json.loads((root / "results" / "results.json").read_text()), proc


# AppleDouble metadata, as macOS's Archive Utility writes it next to every file
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02" + b"\x00" * 64


def test_a_zip_from_macos_grades_the_text_file_not_its_metadata(tmp_path, lb):
    doc, proc = run_autograder(tmp_path, {
        "__MACOSX/._lb.txt": APPLE_DOUBLE, "__MACOSX/.lb.txt": APPLE_DOUBLE,
        ".hidden.txt": b"not.this.one\n", "._lb.txt": APPLE_DOUBLE,
        "lb.txt": f"{lb.address}\n{','.join(lb.instances)}\n".encode()})
    assert doc["score"] == 100, doc["output"]
    assert "submission: lb.txt" in proc.stdout


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom",
                                      "utf-16-be-bom"])
def test_utf8_with_or_without_a_bom_and_utf16_with_one(tmp_path, lb, encoding):
    text = f"\u200b{lb.address}\r\n\r\n{','.join(lb.instances)}\r\n"
    data = {"utf-16-le-bom": b"\xff\xfe" + text.encode("utf-16-le"),
            "utf-16-be-bom": b"\xfe\xff" + text.encode("utf-16-be")}.get(encoding) \
        or text.encode(encoding)
    doc, _ = run_autograder(tmp_path, {"My LB.TXT": data})
    assert doc["score"] == 100, doc["output"]


@pytest.mark.parametrize(("second", "max_score"), [
    ("none", 90), ("N/A", 90), ("-", 90), ("", 90), ("   ", 90), (None, 100)])
def test_no_instances_said_in_words(tmp_path, lb, second, max_score):
    second = ",".join(lb.instances) if second is None else second
    doc, _ = run_autograder(tmp_path, {"lb.txt": f"{lb.address}\n{second}\n".encode()})
    assert doc["score"] == max_score == sum(t["max_score"] for t in doc["tests"]), doc


@pytest.mark.parametrize(("files", "words"), [
    ({}, ["No .txt file in your submission"]),
    ({"__MACOSX/._lb.txt": APPLE_DOUBLE}, ["No .txt file"]),
    ({".lb.txt": b"lb\n"}, ["No .txt file", ".lb.txt (hidden)"]),
    ({"lb.txt": APPLE_DOUBLE}, ["No .txt file", "lb.txt (not text)"]),
    ({"lb.txt": "lb\n".encode("utf-16-le")}, ["lb.txt (not text)"]),  # no byte order mark
    ({"lb.txt": b"\xef\xbb\xbf \r\n\t\r\n"}, ["Your file lb.txt is empty"]),
    ({"lb.txt": b"-h\n"}, ["starts with '-'", "load balancer's DNS name"]),
    ({"lb.txt": b"--gradescope=/etc/passwd\n"}, ["starts with '-'"]),
    ({"lb.txt": b"my-lb.example.com\n-h\n"}, ["second line", "public IPs", "none"]),
    ({"lb.txt": b"my lb.example.com\n"}, ["contains spaces"]),
])
def test_what_cannot_be_graded_gets_a_message_for_the_student(tmp_path, files, words):
    doc, _ = run_autograder(tmp_path, files)
    assert doc["score"] == 0
    text = doc["output"] + json.dumps(doc["tests"])
    for word in words:
        assert word in text, text
    assert "tell your instructor" not in text  # the student's to fix, not a crash


def test_a_first_line_over_128_kib_is_a_message_not_an_error(tmp_path):
    doc, proc = run_autograder(tmp_path, {"lb.txt": b"a" * 200_000 + b"\n"})
    assert doc["score"] == 0
    assert "characters long" in doc["output"] and "DNS name" in doc["output"]
    assert "Argument list too long" not in proc.stderr


def test_a_50_mb_file_costs_nothing(tmp_path, lb):
    # one line of 50 MB: bash's mapfile read it byte by byte (35 s); only 64 KiB is read now
    doc, proc = run_autograder(tmp_path, {"lb.txt": b"x" * 50_000_000})
    assert doc["score"] == 0 and "characters long" in doc["output"]
    assert proc.seconds < 15, proc.seconds  # 35 s before; < 1 s idle, loose for the load
    head = f"{lb.address}\n{','.join(lb.instances)}\n".encode()
    doc, proc = run_autograder(tmp_path / "2", {"lb.txt": head + b"# notes\n" * 6_250_000})
    assert doc["score"] == 100, doc["output"]
    assert proc.seconds < 15, proc.seconds


def test_private_addresses_are_refused_on_gradescope(tmp_path):
    setup = classroom.start_setup("correct", 1, with_instances=True)
    try:
        doc, _ = run_autograder(tmp_path, {"lb.txt": f"{setup.address}\n{setup.instances[0]}"
                                           .encode()}, allow_private=False)
    finally:
        setup.close()
    assert doc["score"] == 0
    assert "address is not public" in json.dumps(doc["tests"])
    assert setup.connections == 0
