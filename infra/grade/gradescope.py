"""Gradescope's results.json from one grade: one test per check, scored by the scheme.

Gradescope's autograder runs `run_autograder` for each submission and reads
/autograder/results/results.json: `score`, and `tests[]` with `name`, `score`,
`max_score`, `output` and `visibility` (its "autograder specifications" page). The score is
the sum of the tests' scores, so a correct setup gets full marks and each failed check
costs its points. Every test is `visible`: students see why they lost points, in the FAQ's
terms, as soon as the grade is done.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.grade.outputs import write_output
from infra.grade.report import FAIL, INSTANCES, PASS, Report
from infra.grade.scoring import Scheme, number, score, total

VISIBILITY = "visible"


def results(report: Report, scheme: Scheme) -> dict:
    scores = score(report.checks, scheme, bool(report.instances))
    tests = []
    for s in scores:
        c = s.check
        lines = [f"{c.status}: {c.reason}"]
        if c.status == FAIL and c.fix:
            lines.append(f"fix: {c.fix}")
        lines += [f"- {d}" for d in c.details]
        for w in c.warnings:
            cost = scheme.warnings.get(w.code, 0)
            off = f"-{number(cost)} points" if cost else "no points off"
            lines.append(f"warning ({w.code}, {off}): {w.reason}; fix: {w.fix}")
        if c.key == INSTANCES and not report.instances:
            lines.append("not scored: no instance addresses were given")
        tests.append({
            "name": f"{c.number}. {c.name}",
            "number": str(c.number),
            "score": number(s.score),
            "max_score": number(s.max_score),
            "status": "passed" if c.status == PASS else "failed",
            "output": "\n".join(lines),
            "visibility": VISIBILITY,
        })
    got, _ = total(scores)
    verdict = "PASS" if report.passed else "FAIL"
    head = [f"{verdict}: graded {report.address.endpoint.url} ({report.requests} requests in "
            f"{report.seconds:.1f} s)"]
    head += [f"note: {n}" for n in report.address.notes]
    head += [f"warning: {w}" for w in report.address.warnings]
    if report.cut_short:
        head.append(f"note: stopped early: {report.cut_short}")
    return {
        "score": number(got),
        "execution_time": round(report.seconds, 1),
        "output": "\n".join(head),
        "visibility": VISIBILITY,
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def results_for_error(message: str, scheme: Scheme) -> dict:
    """No grade could run (the submitted address is unusable): 0 points, and why."""
    worth = sum(v for k, v in scheme.points.items() if k != INSTANCES)
    return {
        "score": 0,
        "output": f"FAIL: {message}",
        "visibility": VISIBILITY,
        "tests": [{
            "name": "0. the submitted address", "number": "0", "score": 0,
            "max_score": number(worth), "status": "failed", "visibility": VISIBILITY,
            "output": f"{message}\nSubmit a text file whose first line is your load "
                      "balancer's DNS name, e.g. my-lb-123.us-east-1.elb.amazonaws.com",
        }],
    }


def write(document: dict, path: str | Path) -> str | None:
    """Write it atomically (a half-written results.json would be read as a broken grade), or
    through a device or FIFO. None, or the line that says where it went instead."""
    return write_output(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                        "results.json")
