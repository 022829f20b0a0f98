"""A POST body -> the new seed (an int), or a BadSeed whose message says what was wrong.

The Content-Type is ignored (graders send JSON every way): JSON first, then a url-encoded
form. What is accepted and refused, and why (`1.0` too): docs/app.md, "What POST / accepts".
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

# Python's limit for int <-> str (sys.int_info.default_max_str_digits): one digit more is a
# 400, never a 500.
MAX_DIGITS = 4300

EXPECTED = 'send a JSON object like {"num": 100}'
_INTEGRAL = re.compile(r"[+-]?[0-9]+")  # ASCII only: int() would also take "١٢" or "1_000"


class BadSeed(ValueError):
    """The body does not carry an acceptable seed; str(err) is the 400's reason."""


class _Float(str):
    """A JSON number with a fraction or exponent, kept as written (json.loads' parse_float)."""


class _Constant(str):
    """NaN, Infinity or -Infinity, which Python's json accepts and JSON does not."""


class _LongInt(str):
    """An integer literal of more than MAX_DIGITS digits, kept as text (never converted)."""


def _json_int(text: str) -> int | _LongInt:
    # json.loads hands integer literals here: an over-long one never reaches int() (whose
    # ValueError would be a 500).
    if len(text.lstrip("-")) > MAX_DIGITS:
        return _LongInt(text)
    return int(text)


def _too_long(digits: int):
    raise BadSeed(f"num has {digits} digits; at most {MAX_DIGITS} are accepted")


def _from_string(value: str) -> int:
    stripped = value.strip()
    if not _INTEGRAL.fullmatch(stripped):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise BadSeed(f"num must be an integer; the string {shown!r} is not one"
                      f" (integral strings such as \"100\" or \" -5 \" are accepted)")
    digits = len(stripped.lstrip("+-"))
    if digits > MAX_DIGITS:
        _too_long(digits)
    return int(stripped)


def _num_of(value: object) -> int:
    # bool is checked first: in Python True is an int (== 1), in JSON it is not a number.
    if isinstance(value, bool):
        return _raise(f"num must be an integer, got the boolean {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, _LongInt):
        return _too_long(len(value.lstrip("-")))
    if isinstance(value, _Float):
        # `1.0` is refused on purpose: its sender holds a float (docs/app.md says why).
        shown = value if len(value) <= 40 else value[:40] + "..."
        return _raise(f"num must be an integer, got the number {shown}"
                      " (no fraction or exponent: write 1, not 1.0 or 1e0)")
    if isinstance(value, _Constant):
        return _raise(f"num must be an integer, got {value}")
    if isinstance(value, str):
        return _from_string(value)
    if value is None:
        return _raise("num must be an integer, got null")
    if isinstance(value, list):
        return _raise("num must be an integer, got a list")
    if isinstance(value, dict):
        return _raise("num must be an integer, got an object")
    return _raise(f"num must be an integer, got {type(value).__name__}")


def _raise(message: str):
    raise BadSeed(message)


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")  # -sig: tolerate a byte-order mark some editors add
    except UnicodeDecodeError as err:
        raise BadSeed(f"the body is not UTF-8 (byte {err.start}); {EXPECTED}") from None
    if not text.strip():
        raise BadSeed(f"the body is empty; {EXPECTED}")
    return text


def _looks_like_form(text: str) -> bool:
    # `num=100` or `a=1&num=2`: no JSON structure characters at the start.
    return "=" in text and text.lstrip()[:1] not in '{["' and "\n" not in text.strip()


def _from_form(text: str) -> int:
    try:
        fields = parse_qs(text.strip(), keep_blank_values=True, strict_parsing=True,
                          max_num_fields=100)
    except ValueError:
        raise BadSeed(f"the body is neither JSON nor a form; {EXPECTED}") from None
    return parse_form_field(fields.get("num", []))


def parse_form_field(values: list[str]) -> int:
    """The seed from a form's `num` values (url-encoded or multipart), or BadSeed."""
    if not values:
        raise BadSeed(f"the form has no num field; {EXPECTED} or the form num=100")
    if len(values) > 1:
        raise BadSeed("the form has num more than once; send it once")
    return _from_string(values[0])


def _kind(body: object) -> str:
    if body is None:
        return "null"
    if isinstance(body, bool):
        return "a boolean"
    if isinstance(body, list):
        return "a list"
    if isinstance(body, str) and not isinstance(body, (_Float, _Constant, _LongInt)):
        return "a string"
    return "a bare number"


def parse_seed(raw: bytes) -> int:
    """The integer that `raw` (a whole POST body) asks the seed to become, or BadSeed."""
    text = _decode(raw)
    try:
        body = json.loads(text, parse_int=_json_int, parse_float=_Float,
                          parse_constant=_Constant)
    except RecursionError:
        raise BadSeed(f"the JSON is nested too deeply; {EXPECTED}") from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        if _looks_like_form(text):
            return _from_form(text)
        raise BadSeed(f"the body is not valid JSON ({err}); {EXPECTED}") from None
    if not isinstance(body, dict):
        raise BadSeed(f"the body is {_kind(body)}, not a JSON object; {EXPECTED}")
    if "num" not in body:
        raise BadSeed(f"the JSON object has no \"num\" key; {EXPECTED}")
    return _num_of(body["num"])
