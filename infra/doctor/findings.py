"""What the doctor reports: one finding per problem, each with a stable code and its fix.

Codes are stable strings (tests, scripts and docs/doctor.md refer to them); the message says
what was seen, the fix says what to do, in the seed FAQ's terms where the FAQ has them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"

SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning | info
    code: str  # stable, e.g. LB_INTERNAL
    message: str  # what was seen, naming the resource
    fix: str = ""  # what to do about it

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        line = f"{self.severity.upper():7} {self.code}: {self.message}"
        if self.fix:
            line += f"\n        fix: {self.fix}"
        return line


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors first; otherwise the order the checks ran in (which follows the request path)."""
    return sorted(findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 3))


def summary_line(findings: list[Finding]) -> str:
    errors = sum(f.severity == ERROR for f in findings)
    warnings = sum(f.severity == WARNING for f in findings)
    verdict = "FAIL" if errors else "OK"
    return f"doctor: {verdict} - {errors} error(s), {warnings} warning(s)"
