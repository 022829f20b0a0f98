"""The grader's report: one line per check, a final PASS/FAIL line, and a dict for --json."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from infra.grade.address import Address, Endpoint
from infra.grade.display import escape, shown
from infra.grade.pitfalls import Pitfall

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
# A stable short name per check: the gradebook's columns and the scoring file's keys.
CONNECT, GET_200, BODY, POST, SPREAD, INSTANCES = (
    "connect", "get_200", "body", "post", "spread", "instances")
CHECK_KEYS = {1: CONNECT, 2: GET_200, 3: BODY, 4: POST, 5: SPREAD, 6: INSTANCES}
CHECK_NUMBERS = {key: number for number, key in CHECK_KEYS.items()}
# What the report calls each check ({port}: the load balancer's).
CHECK_NAMES = {
    CONNECT: "connects to port {port}",
    GET_200: "GET / returns 200",
    BODY: "body is a bare integer",
    POST: "POST / updates every instance",
    SPREAD: "two or more instances serve",
    INSTANCES: "instances answer directly",
}


@dataclass
class Check:
    number: int
    name: str
    status: str = SKIP
    reason: str = ""
    fix: str = ""
    code: str = ""
    details: list[str] = field(default_factory=list)
    warnings: list[Pitfall] = field(default_factory=list)  # pitfalls that do not fail it

    @property
    def key(self) -> str:
        return CHECK_KEYS[self.number]

    def set(self, status: str, reason: str, fix: str = "", code: str = "") -> Check:
        self.status, self.reason, self.fix, self.code = status, reason, fix, code
        return self

    def finding(self, status: str, finding: Pitfall) -> Check:
        return self.set(status, finding.reason, finding.fix, finding.code)


@dataclass
class Report:
    address: Address
    instances: list[Endpoint]
    checks: list[Check]
    requests: int = 0
    seconds: float = 0.0
    instances_source: str = ""
    lb_statuses: list[int] = field(default_factory=list)  # non-200 statuses seen on the LB
    cut_short: str = ""  # the run-wide limit (budget, deadline) that ended it early, if any
    timeout: float = 0.0
    deadline: float = 0.0

    @property
    def passed(self) -> bool:
        # all must pass; the instances check may be skipped when no address is known
        return all(c.status == PASS or (c.key == INSTANCES and c.status == SKIP)
                   for c in self.checks)

    def check(self, which: int | str) -> Check:
        """A check by its key (`get_200`) or its number in the report (2)."""
        return {c.key: c for c in self.checks}[CHECK_KEYS.get(which, which)]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "address": self.address.given,
            "url": self.address.endpoint.url,
            "notes": list(self.address.notes),
            "warnings": list(self.address.warnings),
            "instances": [str(i) for i in self.instances],
            "instances_source": self.instances_source,
            "checks": [
                {
                    "number": c.number,
                    "key": c.key,
                    "name": c.name,
                    "status": c.status,
                    "code": c.code,
                    "reason": c.reason,
                    "fix": c.fix,
                    "details": list(c.details),
                    "warnings": [{"code": w.code, "reason": w.reason, "fix": w.fix}
                                 for w in c.warnings],
                }
                for c in self.checks
            ],
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "cut_short": self.cut_short,
            "timeout": self.timeout,
            "deadline": self.deadline,
        }

    def render(self) -> str:
        """The text report. Every line is escaped once more at the end: whatever a server
        sent, no control character reaches the terminal."""
        return "\n".join(escape(line) for line in self._lines())

    def _lines(self) -> list[str]:
        lines = [f"grading {self.address.endpoint.url}  (given: "
                 f"'{shown(self.address.given, 120)}')"]
        for label, texts in (("note", self.address.notes), ("warning", self.address.warnings)):
            for text in texts:
                lines += textwrap.wrap(f"{label}: {text}", 100, initial_indent="  ",
                                       subsequent_indent="    ")
        if self.instances:
            source = f" ({self.instances_source})" if self.instances_source else ""
            lines.append(f"  instances: {', '.join(map(str, self.instances))}{source}")
        elif self.instances_source:
            lines.append(f"  instances: {self.instances_source}")
        lines.append("")
        name_w = max(len(c.name) for c in self.checks)
        indent = " " * (4 + name_w + 2 + 6)
        lines.append(f"{'#':>2}  {'check':<{name_w}}  result")
        for c in self.checks:
            head = f"{c.number:>2}  {c.name:<{name_w}}  {c.status:<4}  "
            text = f"[{c.code}] {c.reason}" if c.code and c.status == FAIL else c.reason
            body = textwrap.wrap(text, 100 - len(indent)) or [""]
            lines.append(head + body[0])
            lines += [indent + b for b in body[1:]]
            if c.fix and c.status == FAIL:
                lines += textwrap.wrap(
                    "fix: " + c.fix, 100, initial_indent=indent, subsequent_indent=indent + "     "
                )
            for d in c.details:
                lines += textwrap.wrap(
                    d, 100, initial_indent=indent + "- ", subsequent_indent=indent + "  "
                )
            for w in c.warnings:
                lines += textwrap.wrap(
                    f"warning [{w.code}]: {w.reason}; fix: {w.fix}", 100,
                    initial_indent=indent, subsequent_indent=indent + "  "
                )
        lines.append("")
        if self.cut_short:
            lines.append(f"note: stopped early: {self.cut_short}")
        lines.append(f"{self.requests} requests in {self.seconds:.2f} s")
        failed = [str(c.number) for c in self.checks if c.status == FAIL]
        if self.passed:
            lines.append("PASS")
        elif failed:
            lines.append(f"FAIL (check{'s' if len(failed) > 1 else ''} {', '.join(failed)})")
        else:
            lines.append("FAIL (not every check could run)")
        return lines
