"""Dataclasses as JSON objects, checked on the way back in.

A lane of `local faults` is a process of its own; what it reports crosses to the run that
started it as JSON (lane.py). `parse` rebuilds the dataclass from such an object and checks
it against the dataclass's own fields: no field it does not have, none missing that has no
default, each of its declared type. So the schema is the dataclass, written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SchemaError(ValueError):
    """An object that is not what the dataclass it claims to be writes."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# The field types the lanes' dataclasses use, as their annotations spell them.
CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _number,
    "float | None": lambda v: v is None or _number(v),
    "str | None": lambda v: v is None or isinstance(v, str),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and \
        field.default_factory is dataclasses.MISSING


def parse(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)`, once `data` is checked to be what `dataclasses.asdict` makes of one."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: not a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(f"{where}: unknown fields {', '.join(unknown)}")
    missing = sorted(name for name, f in fields.items() if _required(f) and name not in data)
    if missing:
        raise SchemaError(f"{where}: missing {', '.join(missing)}")
    for name, value in data.items():
        kind = str(fields[name].type)
        if not CHECKS[kind](value):
            raise SchemaError(f"{where}: {name} is {value!r}, not {kind}")
    return cls(**data)
