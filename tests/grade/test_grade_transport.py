"""Transport errors are a type: every TransportError has its finding, every ProbeError is
raised with one, and the transport (sockets, HTTP reading, the client) knows nothing of
what a failure means to a student."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.grade.pitfalls import TRANSPORT_FINDINGS, transport_finding
from infra.grade.transport import ProbeError, TransportError

GRADE = Path(__file__).resolve().parents[2] / "infra" / "grade"
TRANSPORT = ("transport.py", "http_answer.py", "http_probe.py")
DIAGNOSIS = {"pitfalls", "checks", "plan", "report", "grader", "gradebook", "scoring"}


@pytest.mark.parametrize("code", list(TransportError))
def test_every_transport_error_has_its_own_finding(code):
    finding = TRANSPORT_FINDINGS.get(code)
    assert finding is not None, f"{code!r} has no finding in pitfalls.TRANSPORT_FINDINGS"
    assert finding.code == code.value and finding.reason and finding.fix
    shown = transport_finding(code, "what was seen")
    assert shown.reason.startswith("what was seen: ") and shown.code == code.value


def test_the_findings_name_no_code_that_is_not_a_transport_error():
    assert set(TRANSPORT_FINDINGS) == set(TransportError)
    assert len({f.reason for f in TRANSPORT_FINDINGS.values()}) == len(TRANSPORT_FINDINGS)


def test_one_code_for_a_connection_that_fails():
    # connect-error and connection-error were two names for one thing
    assert {e.value for e in TransportError} >= {"connection-error"}
    assert not {"connect-error"} & {e.value for e in TransportError}


def _calls(path: Path, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name]


@pytest.mark.parametrize("path", sorted(GRADE.glob("*.py")), ids=lambda p: p.name)
def test_probe_errors_are_raised_with_a_transport_error_not_a_string(path):
    literal = [call.lineno for call in _calls(path, ProbeError.__name__)
               if call.args and isinstance(call.args[0], ast.Constant)]
    assert literal == [], f"{path.name}: ProbeError with a string code at lines {literal}"


@pytest.mark.parametrize("name", TRANSPORT)
def test_the_transport_imports_nothing_from_the_diagnosis(name):
    tree = ast.parse((GRADE / name).read_text())
    imported = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("infra.grade")}
    assert imported and not imported & DIAGNOSIS, imported
