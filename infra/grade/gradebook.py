"""Grading a whole class: the roster in, one row per student out (CSV, JSON), a summary.

Students are graded in parallel threads (`jobs`), each with the same request budget and
deadlines as a single grade, so a black hole costs its timeout once and the run takes about
as long as its slowest grades, not their sum. A row that cannot be graded (an empty or
invalid address, bad instance addresses) is a FAIL with its reason; nothing in one row
stops the others. Ctrl-C cancels the grades in flight, and what was graded is still written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from infra.errors import UserError
from infra.grade.address import parse_address, parse_instances
from infra.grade.display import shown
from infra.grade.grader import grade
from infra.grade.http_probe import Cancelled
from infra.grade.report import CHECK_KEYS, FAIL, PASS, SKIP, Report
from infra.grade.roster import Student
from infra.grade.scoring import Scheme, number, score, total

COLUMNS = ["student", "address", "verdict", "score", "max_score", *CHECK_KEYS.values(),
           "reasons", "graded_at"]
DEFAULT_JOBS = 16


@dataclass
class Row:
    student: str
    address: str
    verdict: str
    score: float
    max_score: float
    checks: dict[str, str]  # check key -> PASS/FAIL/SKIP
    reasons: list[str]  # "code: explanation", one per failed check
    graded_at: str
    codes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    error: bool = False  # the grader itself failed on this row (a bug to report)

    def record(self) -> dict:
        """The CSV's columns; --json has the same fields, reasons as a list."""
        return {"student": self.student, "address": self.address, "verdict": self.verdict,
                "score": number(self.score), "max_score": number(self.max_score),
                **self.checks, "reasons": list(self.reasons), "graded_at": self.graded_at}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(code: str, text: str) -> str:
    # one line, and no "; " inside: that separates the reasons in the CSV cell
    return f"{code}: {shown(' '.join(text.split()), 240).replace(';', ',')}"


def row_from_report(student: Student, report: Report, scheme: Scheme) -> Row:
    scores = score(report.checks, scheme, bool(report.instances))
    got, worth = total(scores)
    failed = [c for c in report.checks if c.status == FAIL]
    reasons = [_reason(c.code or "fail", c.reason) for c in failed]
    if not report.passed and not failed:  # SKIPs only: the run was cut short
        reasons.append(_reason("not-finished", report.cut_short or "not every check could run"))
    return Row(student.student, student.address, PASS if report.passed else FAIL, got, worth,
               {c.key: c.status for c in report.checks}, reasons, _now(),
               [c.code for c in failed if c.code], report.seconds, report.requests)


def row_for_bad_input(student: Student, code: str, message: str, scheme: Scheme) -> Row:
    """A row with nothing to grade: FAIL, no request sent, the reason from the parser."""
    checks = {key: SKIP for key in CHECK_KEYS.values()}
    checks["connect"] = FAIL
    worth = sum(v for k, v in scheme.points.items() if k != "instances" or student.instances)
    return Row(student.student, student.address, FAIL, 0, worth, checks,
               [_reason(code, message)], _now(), [code])


def grade_student(student: Student, scheme: Scheme, *, timeout: float, deadline: float,
                  cancel: threading.Event | None = None) -> Row:
    if not student.address.strip():
        return row_for_bad_input(student, "no-address", "the roster gives no address for this "
                                 "student", scheme)
    try:
        address = parse_address(student.address)
    except UserError as exc:
        return row_for_bad_input(student, "bad-address", str(exc), scheme)
    try:
        instances = parse_instances(student.instances) if student.instances.strip() else []
    except UserError as exc:
        return row_for_bad_input(student, "bad-instances", str(exc), scheme)
    report = grade(address, instances, timeout=timeout, deadline=deadline, cancel=cancel)
    return row_from_report(student, report, scheme)


@dataclass
class ClassRun:
    """The rows graded so far, by roster position, and whether the run was interrupted."""

    students: list[Student]
    rows: dict[int, Row] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    def graded(self) -> list[Row]:
        return [self.rows[i] for i in sorted(self.rows)]


def grade_class(students: list[Student], scheme: Scheme, *, jobs: int = DEFAULT_JOBS,
                timeout: float, deadline: float, progress=None) -> ClassRun:
    """Grade every student, `jobs` at a time. Ctrl-C ends it with what is done so far."""
    run = ClassRun(students)
    cancel = threading.Event()
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    futures: dict[Future, int] = {}
    try:
        for i, student in enumerate(students):
            futures[pool.submit(grade_student, student, scheme, timeout=timeout,
                                deadline=deadline, cancel=cancel)] = i
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                run.rows[futures[future]] = _row_of(future, students[futures[future]], scheme)
            if progress is not None:
                progress(run, time.monotonic() - started)
    except KeyboardInterrupt:
        run.interrupted = True
        cancel.set()  # grades in flight stop within a quarter of a second
        for future in futures:
            future.cancel()
    finally:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            run.interrupted = True  # a second Ctrl-C: stop waiting; what is done is kept
            cancel.set()
        if run.interrupted:  # keep what finished while the others were stopping
            for future, i in futures.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    run.rows.setdefault(i, future.result())
    run.seconds = time.monotonic() - started
    return run


def _row_of(future: Future, student: Student, scheme: Scheme) -> Row:
    try:
        return future.result()
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug on one student's setup must not stop the class
        row = row_for_bad_input(student, "grader-error", f"the grader failed on this setup "
                                f"({type(exc).__name__}: {exc}); please report it", scheme)
        row.error = True
        return row


class ProgressLine:
    """`graded 23/60  PASS 10  FAIL 13  4.2 s` on stderr: rewritten in place on a terminal,
    else one line every few seconds and at the end."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.last = -every
        self.shown = -1
        self.open = False

    def __call__(self, run: ClassRun, elapsed: float) -> None:
        rows = run.rows.values()
        count = len(run.rows)
        finished = count == len(run.students)
        if count == self.shown and not finished:
            return
        if not self.tty and not finished and elapsed - self.last < self.every:
            return
        passes = sum(r.verdict == PASS for r in rows)
        line = (f"graded {count}/{len(run.students)}  PASS {passes}  FAIL {count - passes}  "
                f"{elapsed:.1f} s")
        self.last, self.shown = elapsed, count
        self.open = self.tty and not finished
        print(("\r" if self.tty else "") + line, end="" if self.open else "\n",
              file=self.stream, flush=True)

    def close(self) -> None:
        """End a line left open on a terminal (an interrupted run)."""
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False


# A cell that starts with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP, "CSV Injection"): a submitted address such as =HYPERLINK(...) would run in the
# instructor's spreadsheet. A leading ' makes it text; --json keeps the values as they are.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value):
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: list[Row], path: str | Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        record = row.record()
        record["reasons"] = "; ".join(record["reasons"])
        writer.writerow({key: spreadsheet_text(value) for key, value in record.items()})
    _write_atomically(path, buffer.getvalue())


def write_json(rows: list[Row], stream) -> None:
    json.dump([row.record() for row in rows], stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def _write_atomically(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {shown(str(path))}: {exc.strerror}") from None


def check_writable(path: str | Path) -> None:
    """Before a long run: the gradebook's folder exists and takes a file."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UserError(f"--out {shown(str(path))}: the folder {shown(str(folder))} does not "
                        "exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out {shown(str(path))}: cannot write in {shown(str(folder))}")


def summary(run: ClassRun, jobs: int) -> str:
    rows = run.graded()
    passes = sum(r.verdict == PASS for r in rows)
    lines = [f"{len(rows)} of {len(run.students)} students graded in {run.seconds:.1f} s "
             f"(--jobs {jobs}): {passes} PASS, {len(rows) - passes} FAIL"]
    if rows:
        slowest = max(rows, key=lambda r: r.seconds)
        lines.append(f"slowest grade: {slowest.seconds:.1f} s ({shown(slowest.student, 40)}); "
                     f"requests sent: {sum(r.requests for r in rows)}")
    hits = Counter(code for r in rows for code in dict.fromkeys(r.codes))
    if hits:
        example = {}
        for r in rows:
            for reason in r.reasons:
                example.setdefault(reason.split(":", 1)[0], reason.split(":", 1)[1].strip())
        width = max(len(code) for code in hits)
        lines += ["", f"{'finding':<{width}}  students  for example"]
        for code, count in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0])):
            text = example.get(code, "")
            text = text if len(text) <= 72 else text[:69] + "..."
            lines.append(f"{code:<{width}}  {count:>8}  {text}")
    errors = [r for r in rows if r.error]
    if errors:
        lines += ["", f"the grader itself failed on {len(errors)} row(s) (grader-error): "
                  "please report them"]
    return "\n".join(lines)
