"""A small evaluator of identity policies, for the tests: enough of AWS's evaluation logic to
check `python -m infra policy` against recorded requests, and nothing more.

Why a small one here: no maintained Python package evaluates an identity policy against a
request's resources and condition context. moto's IAM enforcement matches resources only
against "*" and evaluates no condition; principalmapper's local simulator was last released
in January 2022; iam-ape and policyuniverse summarise or parse policies; the maintained
simulator (@cloud-copilot/iam-simulate) is JavaScript and would need Node in CI.

What it does, after the IAM User Guide's "Policy evaluation logic" for a single account and
identity policies only:
- a request is one action on one resource ARN (or "*" for actions without resource-level
  permissions) with its context keys; a call that authorizes several resources is several
  requests, and is allowed only if each one is;
- an explicit Deny wins; otherwise an Allow whose Action, Resource and every Condition
  match; otherwise denied (implicitly);
- Action and Resource: exact, or with the wildcards * and ? (case-insensitive for actions);
- Condition: only the operators the project's policy uses, StringEquals and StringLike,
  on single-valued keys; a key missing from the context does not match (as AWS does for
  these operators without ...IfExists). Any other operator raises, so that a policy using
  one cannot pass unevaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

OPERATORS = ("StringEquals", "StringLike")


@dataclass(frozen=True)
class Request:
    action: str  # service:Operation
    resource: str  # an ARN, or "*"
    context: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    why: str = ""  # the recorded call it stands for, for the failure message


@cache
def _glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.S | (re.I if ignore_case else 0))


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case=ignore_case).match(value))


def _listed(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        if operator not in OPERATORS:
            raise NotImplementedError(f"condition operator {operator} is not evaluated here")
        for key, wanted in tests.items():
            # Condition keys are case-insensitive; their values are not.
            found = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if found is None:
                return False
            if operator == "StringEquals" and found not in _listed(wanted):
                return False
            if operator == "StringLike" and not any(matches(w, found) for w in _listed(wanted)):
                return False
    return True


def statement_applies(statement: dict, request: Request) -> bool:
    if not any(matches(a, request.action, ignore_case=True)
               for a in _listed(statement["Action"])):
        return False
    if not any(matches(r, request.resource) for r in _listed(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition") or {}, request.context)


def decide(policy: dict, request: Request) -> str:
    """"Allow", "ExplicitDeny" or "ImplicitDeny"."""
    applying = [s for s in policy["Statement"] if statement_applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "ExplicitDeny"
    return "Allow" if applying else "ImplicitDeny"


def allowed(policy: dict, request: Request) -> bool:
    return decide(policy, request) == "Allow"


def globs_intersect(a: str, b: str) -> bool:
    """Whether some ARN matches both wildcard patterns (* and ?): does a statement's Resource
    pattern reach any ARN of a resource type's format? A wildcard stays within its ARN
    segment here (it matches no colon), so that vpc/* and subnet/* never meet."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(a):
            return all(c == "*" for c in b[j:])
        if j == len(b):
            return all(c == "*" for c in a[i:])
        if a[i] == "*":
            return go(i + 1, j) or (b[j] != ":" and go(i, j + 1))
        if b[j] == "*":
            return go(i, j + 1) or (a[i] != ":" and go(i + 1, j))
        return (a[i] == b[j] or ("?" in (a[i], b[j]) and ":" not in (a[i], b[j]))) \
            and go(i + 1, j + 1)

    return go(0, 0)
