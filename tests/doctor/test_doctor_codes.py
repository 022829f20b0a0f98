"""Finding codes are a contract (scripts read --json, docs/doctor.md lists them): every code the
doctor can emit is documented in docs/doctor.md's table."""

from __future__ import annotations

import re
from pathlib import Path

from infra.doctor.target_reasons import REASONS, UNKNOWN

REPO = Path(__file__).resolve().parents[2]


def emitted_codes() -> set[str]:
    source = "\n".join(p.read_text() for p in sorted((REPO / "infra" / "doctor").glob("*.py")))
    codes = set(re.findall(r'\.add\(\s*(?:ERROR|WARNING|INFO),\s*"([A-Z0-9_]+)"', source))
    return codes | {r.code for r in REASONS.values()} | {UNKNOWN.code}


def test_every_code_is_in_the_docs():
    section = (REPO / "docs" / "doctor.md").read_text()
    codes = emitted_codes()
    assert len(codes) > 30
    assert sorted(c for c in codes if f"`{c}`" not in section) == []


def test_codes_are_upper_snake_case_and_reasons_cover_aws_list():
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", c) for c in emitted_codes())
    for aws_reason in ("Target.Timeout", "Target.ResponseCodeMismatch",
                       "Target.FailedHealthChecks", "Target.NotRegistered", "Target.NotInUse",
                       "Target.InvalidState", "Target.IpUnusable", "Target.HealthCheckDisabled",
                       "Elb.RegistrationInProgress", "Elb.InitialHealthChecking",
                       "Elb.InternalError"):
        assert aws_reason in REASONS
