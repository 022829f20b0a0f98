"""Points per check: a small scheme an instructor can set, and a report's score under it.

The default (DEFAULT_POINTS) gives the load balancer's checks 90 of 100 points and the
instances-answer-directly check 10, which count only when instance addresses were given:
without them that check's max_score is 0, so a correct setup still gets full marks.

A scheme file (`--scores FILE`) is TOML (read with tomllib) or JSON, with the points either
at the top level or under `points`:

    [points]
    connect = 10
    get_200 = 20
    body = 20
    post = 20
    spread = 20
    instances = 10

Keys left out keep their default; an unknown key or a negative number is an error (exit 2).
A check scores its points on PASS, and 0 on FAIL or SKIP.

A warning (a pitfall the real grader passes, pitfalls.WARNING_CODES) costs nothing unless a
`[warnings]` table gives it points, taken off the check that passed with it:

    [warnings]
    json-content-type = 5    # the bare number, labelled application/json (check 3)
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import UserError
from infra.grade.display import shown
from infra.grade.pitfalls import WARNING_CODES
from infra.grade.report import (
    BODY,
    CHECK_KEYS,
    CONNECT,
    GET_200,
    INSTANCES,
    PASS,
    POST,
    SPREAD,
    Check,
)

DEFAULT_POINTS: dict[str, float] = {
    CONNECT: 10, GET_200: 20, BODY: 20, POST: 20, SPREAD: 20, INSTANCES: 10,
}


@dataclass(frozen=True)
class Scheme:
    points: dict[str, float]
    source: str = "default"
    warnings: dict[str, float] = field(default_factory=dict)  # code -> points taken off


@dataclass(frozen=True)
class CheckScore:
    check: Check
    score: float
    max_score: float


def load_scheme(path: str | Path | None) -> Scheme:
    if path is None:
        return Scheme(dict(DEFAULT_POINTS))
    path = Path(path)
    name = shown(str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the scoring file {name}: {exc.strerror}") from None
    data = _parse(raw, path.suffix.lower(), name)
    warnings = {}
    if isinstance(data, dict) and "warnings" in data:
        warnings = _warnings(data.pop("warnings"), name)
    if isinstance(data, dict) and isinstance(data.get("points"), dict):
        data = data["points"]
    if not isinstance(data, dict):
        raise UserError(f"scoring file {name}: expected a table of points per check "
                        f"({', '.join(CHECK_KEYS.values())})")
    unknown = sorted(set(data) - set(DEFAULT_POINTS))
    if unknown:
        raise UserError(f"scoring file {name}: unknown check(s) {', '.join(map(repr, unknown))};"
                        f" the checks are {', '.join(DEFAULT_POINTS)}")
    points = dict(DEFAULT_POINTS)
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            raise UserError(f"scoring file {name}: {key} = {shown(repr(value), 30)} is not a "
                            "number of points (0 or more)")
        points[key] = value
    return Scheme(points, str(path), warnings)


def _warnings(table, name: str) -> dict[str, float]:
    if not isinstance(table, dict):
        raise UserError(f"scoring file {name}: [warnings] must be a table of points per "
                        f"warning ({', '.join(sorted(WARNING_CODES))})")
    unknown = sorted(set(table) - WARNING_CODES)
    if unknown:
        raise UserError(f"scoring file {name}: unknown warning(s) {', '.join(map(repr, unknown))}"
                        f"; the warnings are {', '.join(sorted(WARNING_CODES))}")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            raise UserError(f"scoring file {name}: warning {key} = {shown(repr(value), 30)} is "
                            "not a number of points (0 or more)")
    return dict(table)


def _parse(raw: bytes, suffix: str, name: str):
    errors = []
    parsers = [("TOML", tomllib.loads), ("JSON", json.loads)]
    if suffix == ".json":
        parsers.reverse()
    for kind, parse in parsers:
        try:
            return parse(raw.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
            errors.append(f"{kind}: {shown(str(exc), 80)}")
    raise UserError(f"scoring file {name} is neither TOML nor JSON ({'; '.join(errors)})")


def score(checks: list[Check], scheme: Scheme, instances_given: bool) -> list[CheckScore]:
    """Each check's score and max_score (the instances check is worth 0 without instances)."""
    out = []
    for check in checks:
        worth = scheme.points.get(check.key, 0)
        if check.key == INSTANCES and not instances_given:
            worth = 0
        got = worth if check.status == PASS else 0
        if got:
            got = max(0, got - sum(scheme.warnings.get(w.code, 0) for w in check.warnings))
        out.append(CheckScore(check, got, worth))
    return out


def total(scores: list[CheckScore]) -> tuple[float, float]:
    return sum(s.score for s in scores), sum(s.max_score for s in scores)


def number(value: float) -> int | float:
    """10.0 -> 10, 2.5 -> 2.5: points as a person writes them."""
    return int(value) if float(value).is_integer() else round(value, 3)
