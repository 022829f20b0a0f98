"""Grading a whole class: the roster in, one row per student out (CSV, JSON), a summary.

Students are graded in parallel threads (`jobs`), each with the same request budget and
deadlines as a single grade, so a black hole costs its timeout once and the run takes about
as long as its slowest grades, not their sum. Rows that name the same address (after
normalisation: http://, a trailing /, :80, case) share one grade, and the grades of one load
balancer never run at once: each POSTs its own numbers, and two at a time would read each
other's. A row that cannot be graded (an empty or invalid address, bad instance addresses,
a cell too large) is a FAIL with its reason; nothing in one row stops the others. Ctrl-C
cancels the grades in flight, and what was graded is still written.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from infra.errors import UserError
from infra.grade.address import Address, Endpoint, parse_address, parse_instances
from infra.grade.display import escape, shown
from infra.grade.grader import grade
from infra.grade.report import CHECK_KEYS, CONNECT, FAIL, INSTANCES, PASS, SKIP, Report
from infra.grade.roster import Student
from infra.grade.scoring import Scheme, number, score, total
from infra.grade.transport import Cancelled

COLUMNS = ["student", "address", "verdict", "score", "max_score", *CHECK_KEYS.values(),
           "reasons", "notes", "graded_at"]
DEFAULT_JOBS = 16


@dataclass
class GradebookRow:
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
    notes: list[str] = field(default_factory=list)  # shared grades, warnings, duplicate ids
    warnings: list[str] = field(default_factory=list)  # warning codes (a PASS with a pitfall)
    line: int = 0  # in the roster
    own_grade: bool = True  # False: the result of a grade another row's line already counts

    def record(self) -> dict:
        """The CSV's columns; --json has the same fields, reasons and notes as lists."""
        return {"student": self.student, "address": self.address, "verdict": self.verdict,
                "score": number(self.score), "max_score": number(self.max_score),
                **self.checks, "reasons": list(self.reasons), "notes": list(self.notes),
                "graded_at": self.graded_at}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(code: str, text: str) -> str:
    # one line, and no "; " inside: that separates the reasons in the CSV cell
    return f"{code}: {shown(' '.join(text.split()), 240).replace(';', ',')}"


def row_from_report(student: Student, report: Report, scheme: Scheme) -> GradebookRow:
    scores = score(report.checks, scheme, bool(report.instances))
    got, worth = total(scores)
    failed = [c for c in report.checks if c.status == FAIL]
    reasons = [_reason(c.code or "fail", c.reason) for c in failed]
    if not report.passed and not failed:  # SKIPs only: the run was cut short
        reasons.append(_reason("not-finished", report.cut_short or "not every check could run"))
    warned = [w for c in report.checks for w in c.warnings]
    notes = [_reason(f"warning {w.code}", w.reason) for w in warned]
    return GradebookRow(student.student, student.address, PASS if report.passed else FAIL,
                        got, worth, {c.key: c.status for c in report.checks}, reasons, _now(),
                        [c.code for c in failed if c.code], report.seconds, report.requests,
                        notes=notes, warnings=[w.code for w in warned], line=student.line)


def row_for_bad_input(student: Student, code: str, message: str, scheme: Scheme) -> GradebookRow:
    """A row with nothing to grade: FAIL, no request sent, the reason from the parser."""
    checks = {key: SKIP for key in CHECK_KEYS.values()}
    checks[CONNECT] = FAIL
    worth = sum(v for k, v in scheme.points.items() if k != INSTANCES or student.instances)
    return GradebookRow(student.student, student.address, FAIL, 0, worth, checks,
                        [_reason(code, message)], _now(), [code], line=student.line)


def _parse(student: Student, scheme: Scheme) -> GradebookRow | tuple[Address, list[Endpoint]]:
    """What a row asks to grade, or its FAIL row when it cannot be graded (no request)."""
    if student.problem:
        return row_for_bad_input(student, "cell-too-large", student.problem, scheme)
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
    return address, instances


@dataclass
class Grade:
    """One grade: an address and instances, and the roster positions of the rows naming them."""

    address: Address
    instances: list[Endpoint]
    positions: list[int] = field(default_factory=list)


@dataclass
class ClassPlan:
    """A roster made into work: rows that need no request, and the grades to run, one list
    per load balancer. The grades of one list run one after the other, never at once: each
    grade POSTs its own numbers, and two at a time would overwrite each other's."""

    ready: dict[int, GradebookRow]
    by_lb: list[list[Grade]]
    notes: dict[int, list[str]]  # roster position -> notes for its row
    duplicates: dict[str, list[int]]  # student id -> roster lines, where it is in several

    @property
    def shared(self) -> list[Grade]:
        return [g for grades in self.by_lb for g in grades if len(g.positions) > 1]


def plan(students: list[Student], scheme: Scheme) -> ClassPlan:
    ready: dict[int, GradebookRow] = {}
    lbs: dict[Endpoint, dict[tuple, Grade]] = {}
    for i, student in enumerate(students):
        parsed = _parse(student, scheme)
        if isinstance(parsed, GradebookRow):
            ready[i] = parsed
            continue
        address, instances = parsed
        grades = lbs.setdefault(address.endpoint, {})
        grades.setdefault(tuple(instances), Grade(address, instances)).positions.append(i)
    notes: dict[int, list[str]] = {}

    def lines(positions) -> str:
        return ", ".join(str(students[p].line) for p in positions)

    for grades in lbs.values():
        for g in grades.values():
            for p in g.positions:
                others = [q for q in g.positions if q != p]
                if others:
                    notes.setdefault(p, []).append(f"shared with rows {lines(others)}: the same "
                                                   "address, graded once for all of them")
                in_turn = [q for h in grades.values() if h is not g for q in h.positions]
                if in_turn:
                    notes.setdefault(p, []).append(
                        f"same load balancer as rows {lines(in_turn)} (other instances): "
                        "graded one after the other")
    seen: dict[str, list[int]] = {}
    for student in students:
        if student.student.strip():
            seen.setdefault(student.student.strip().casefold(), []).append(student.line)
    duplicates = {}
    for i, student in enumerate(students):
        key = student.student.strip().casefold()
        if len(seen.get(key, [])) > 1:
            duplicates.setdefault(student.student.strip(), seen[key])
            others = [n for n in seen[key] if n != student.line]
            notes.setdefault(i, []).append(f"duplicate student id: also in rows "
                                           f"{', '.join(map(str, others))}")
    return ClassPlan(ready, [list(g.values()) for g in lbs.values()], notes, duplicates)


@dataclass
class ClassRun:
    """The rows graded so far, by roster position, and whether the run was interrupted."""

    students: list[Student]
    rows: dict[int, GradebookRow] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    plan: ClassPlan | None = None

    def graded(self) -> list[GradebookRow]:
        return [self.rows[i] for i in sorted(self.rows)]


def grade_class(students: list[Student], scheme: Scheme, *, jobs: int = DEFAULT_JOBS,
                timeout: float, deadline: float, progress=None,
                public_only: bool = False) -> ClassRun:
    """Grade every student, `jobs` load balancers at a time; rows naming one address share
    one grade. Ctrl-C ends it with what is done so far. `public_only`: see public.py."""
    work = plan(students, scheme)
    run = ClassRun(students, plan=work)
    cancel = threading.Event()
    started = time.monotonic()

    def keep(rows: dict[int, GradebookRow]) -> None:
        for i, row in rows.items():
            row.notes = work.notes.get(i, []) + row.notes
            run.rows[i] = row

    keep(dict(work.ready))
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    futures: dict[Future, list[Grade]] = {}
    try:
        for grades in work.by_lb:
            futures[pool.submit(_grade_one_lb, grades, students, scheme, timeout=timeout,
                                deadline=deadline, cancel=cancel,
                                public_only=public_only)] = grades
        pending = set(futures)
        if progress is not None:
            progress(run, time.monotonic() - started)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                keep(_rows_of(future, futures[future], students, scheme))
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
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    keep({i: r for i, r in future.result().items() if i not in run.rows})
    run.seconds = time.monotonic() - started
    return run


def _grade_one_lb(grades: list[Grade], students: list[Student], scheme: Scheme, *,
                  timeout: float, deadline: float, cancel: threading.Event,
                  public_only: bool) -> dict[int, GradebookRow]:
    """The grades naming one load balancer, one after the other; a row for each position."""
    rows: dict[int, GradebookRow] = {}
    for g in grades:
        try:
            report = grade(g.address, g.instances, timeout=timeout, deadline=deadline,
                           cancel=cancel, public_only=public_only)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug on one student's setup must not stop the class
            rows.update(_grader_error(g, students, scheme, exc))
            continue
        for k, i in enumerate(g.positions):
            rows[i] = row_from_report(students[i], report, scheme)
            rows[i].own_grade = k == 0
    return rows


def _rows_of(future: Future, grades: list[Grade], students: list[Student],
             scheme: Scheme) -> dict[int, GradebookRow]:
    try:
        return future.result()
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - the same: one load balancer, not the class
        rows: dict[int, GradebookRow] = {}
        for g in grades:
            rows.update(_grader_error(g, students, scheme, exc))
        return rows


def _grader_error(g: Grade, students: list[Student], scheme: Scheme,
                  exc: Exception) -> dict[int, GradebookRow]:
    rows = {}
    for i in g.positions:
        rows[i] = row_for_bad_input(students[i], "grader-error", f"the grader failed on this "
                                    f"setup ({type(exc).__name__}: {exc}); please report it",
                                    scheme)
        rows[i].error = True
    return rows


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


def gradebook_csv(rows: list[GradebookRow]) -> str:
    """The gradebook as CSV text. Every cell is escaped (a NUL is `\\x00`, a newline `\\n`),
    then made text for a spreadsheet: a student's name or address is their input."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        record = row.record()
        record["reasons"] = "; ".join(record["reasons"])
        record["notes"] = "; ".join(record["notes"])
        writer.writerow({key: spreadsheet_text(escape(value) if isinstance(value, str) else value)
                         for key, value in record.items()})
    return buffer.getvalue()


def write_json(rows: list[GradebookRow], stream) -> None:
    json.dump([row.record() for row in rows], stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def summary(run: ClassRun, jobs: int) -> str:
    rows = run.graded()
    passes = sum(r.verdict == PASS for r in rows)
    lines = [f"{len(rows)} of {len(run.students)} students graded in {run.seconds:.1f} s "
             f"(--jobs {jobs}): {passes} PASS, {len(rows) - passes} FAIL"]
    if rows:
        slowest = max(rows, key=lambda r: r.seconds)
        lines.append(f"slowest grade: {slowest.seconds:.1f} s ({shown(slowest.student, 40)}); "
                     f"requests sent: {sum(r.requests for r in rows if r.own_grade)}")
    lines += _table("finding", rows, lambda r: r.codes, lambda r: r.reasons)
    lines += _table("warning (a PASS)", rows, lambda r: r.warnings,
                    lambda r: [n.removeprefix("warning ") for n in r.notes
                               if n.startswith("warning ")])
    work = run.plan
    if work is not None and work.shared:
        lines += ["", "shared addresses (graded once, the result given to each row):"]
        for g in work.shared:
            named = ", ".join(str(run.students[p].line) for p in g.positions)
            lines.append(f"  {shown(str(g.address.endpoint), 60)}: rows {named}")
    if work is not None and work.duplicates:
        lines += ["", "duplicate student ids (each row graded as given):"]
        for student, where in work.duplicates.items():
            lines.append(f"  '{shown(student, 40)}': rows {', '.join(map(str, where))}")
    errors = [r for r in rows if r.error]
    if errors:
        lines += ["", f"the grader itself failed on {len(errors)} row(s) (grader-error): "
                  "please report them"]
    return "\n".join(lines)


def _table(title: str, rows: list[GradebookRow], codes_of, texts_of) -> list[str]:
    """One line per code: the students that hit it, most common first, and an example."""
    hits = Counter(code for r in rows for code in dict.fromkeys(codes_of(r)))
    if not hits:
        return []
    example: dict[str, str] = {}
    for r in rows:
        for text in texts_of(r):
            code, _, rest = text.partition(":")
            example.setdefault(code, rest.strip())
    width = max(len(title), *(len(code) for code in hits))
    lines = ["", f"{title:<{width}}  students  for example"]
    for code, count in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0])):
        text = example.get(code, "")
        text = text if len(text) <= 72 else text[:69] + "..."
        lines.append(f"{code:<{width}}  {count:>8}  {text}")
    return lines
