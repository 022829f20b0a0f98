"""The ways students fail the autograder, recognized from what came back over HTTP.

Each finding has a stable `code` (tests and `--json` users match on it), a one-line reason
and a fix, in the terms of the seed document's FAQ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.grade.display import shown
from infra.grade.http_answer import Exchange
from infra.grade.transport import TransportError

# Python's limit for int() of a string (sys.int_info.default_max_str_digits), which the app
# keeps to as well (app/parsing.py): a longer number is a ValueError in a grader's int().
MAX_DIGITS = 4300
# fullmatch, ASCII digits: `$` alone would let a trailing "\n" through, and `\d` would
# take "١٢٣" (Arabic-Indic digits), which int() reads but a text comparison does not.
BARE_INTEGER = re.compile(r"-?[0-9]+")
_BYTES_LITERAL = re.compile(r"""^\s*b(['"]).*\1\s*$""", re.DOTALL)
_JSON_QUOTED = re.compile(r'^\s*"\s*-?[0-9]+\s*"\s*$')
_PADDED = re.compile(r"^\s*-?[0-9]+\s*$")
_FLOAT = re.compile(r"^\s*-?[0-9]+\.[0-9]*\s*$")
_ANY_INTEGER = re.compile(r"-?[0-9]+")
_OTHER_DIGITS = re.compile(r"^\s*-?\d+\s*$")  # any script's decimal digits (str pattern)


# Findings that do not fail their check: the real grader passes them, so failing them would
# make students change working code. They are shown as warnings and cost points only when
# the scoring file gives them some (scoring.py's [warnings]).
WARNING_CODES = frozenset({"json-content-type"})


@dataclass(frozen=True)
class Pitfall:
    code: str
    reason: str
    fix: str


def lenient_value(body: str) -> int | None:
    """The integer a body most likely means, whatever its wrapping (for comparing values
    while the format itself is judged separately): '100', '"100"\\n', "b'\\"100\\"\\n'"."""
    numbers = _ANY_INTEGER.findall(body[: 2 * MAX_DIGITS + 100])
    if len(numbers) != 1 or len(numbers[0].lstrip("-")) > MAX_DIGITS:
        return None  # none, several, or too long for int(): no value to compare
    return int(numbers[0])


def value_of(ex: Exchange) -> int | None:
    """The number a whole 200 answer holds (lenient_value), or None: what the grader
    compares with the numbers it POSTed."""
    if ex.error or ex.truncated or ex.status != 200:
        return None
    return lenient_value(ex.body)


def show_body(body: str, limit: int = 60, size: str = "") -> str:
    """The body as the user would recognize it: verbatim in backquotes when it is one line
    of printable text (so a bytes literal reads b'"1000"\\n'), else repr() (a real newline,
    an ESC as \\x1b); cut to `limit` characters, with the full size noted."""
    cut = body[:limit]
    if len(body) > limit or size:
        more = f"... ({size or f'{len(body):,} characters'} in all)"
    else:
        more = ""
    if cut and cut.isprintable() and "`" not in cut:
        return f"`{cut}`{more}"
    return repr(cut) + more


def digits_in(body: str) -> int:
    return len(body.strip().lstrip("-"))


def classify_body(body: str, content_type: str, size: str = "") -> Pitfall | None:
    """None when the body is what the grader wants: exactly `^-?[0-9]+$` (ASCII, at most
    MAX_DIGITS digits), not labelled JSON. `size` is set when the body was cut at the cap."""
    seen = show_body(body, size=size)
    if size:
        return Pitfall(
            "body-too-large",
            f"the body is {size}, where the seed is a few digits: {seen}",
            "GET / must return only the seed, a few digits: `return str(seed)`",
        )
    if BARE_INTEGER.fullmatch(body):
        return _bare_integer(body, seen, content_type)
    for shape in _SHAPES:
        found = shape(body, seen)
        if found:
            return found
    return Pitfall(
        "not-integer",
        f"body {seen} is not a bare integer (^-?\\d+$)",
        "make GET / return only the seed: `return str(seed)`",
    )


def classify_answer(ex: Exchange) -> Pitfall | None:
    """classify_body of a 200 answer, with its size when it was cut at the cap."""
    return classify_body(ex.body, ex.content_type, ex.body_size if ex.truncated else "")


def _bare_integer(body: str, seen: str, content_type: str) -> Pitfall | None:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if digits_in(body) > MAX_DIGITS:
        return Pitfall(
            "number-too-long",
            f"the body is an integer of {digits_in(body):,} digits ({seen}); a grader's "
            f"int() refuses more than {MAX_DIGITS:,} (ValueError), and the app keeps at most "
            "that many",
            "return the seed the last POST stored, str(seed); the grader sends 8-digit numbers",
        )
    if ctype == "application/json" or ctype.endswith("+json"):
        return Pitfall(
            "json-content-type",
            f"body {seen} is the bare number, as graded, but labelled "
            f"Content-Type {shown(ctype, 60)} (FastAPI's `return seed` does this): a "
            "grader that compares the text passes it, as the course's does; a client "
            "that trusts the label reads a JSON number, not the string the seed asks for",
            "return the number as text: `return str(seed)` (Flask labels it text/html), "
            "or FastAPI's PlainTextResponse(str(seed))",
        )
    return None


# What a body that is not a bare integer looks like, tried in this order.
def _empty(body: str, seen: str) -> Pitfall | None:
    if not body:
        return Pitfall("empty-body", "the body is empty", "return the seed: `return str(seed)`")
    return None


def _other_digits(body: str, seen: str) -> Pitfall | None:
    if _OTHER_DIGITS.match(body) and not _PADDED.match(body):
        return Pitfall(
            "non-ascii-digits",
            f"body {seen} is written in digits other than ASCII 0-9 (e.g. Arabic-Indic "
            "١٢٣): the grader compares the text with the number it sent, in 0-9",
            "return str(seed) of an int (always 0-9); do not localize or format the number",
        )
    return None


def _bytes_literal(body: str, seen: str) -> Pitfall | None:
    if _BYTES_LITERAL.match(body):
        return Pitfall(
            "bytes-literal",
            f"body {seen} is a Python bytes literal: str() of bytes (FAQ 6, b'\"1000\"\\n')",
            "decode instead of str(): parse the POST with request.get_json(force=True) and "
            "store int(data['num']); return str(seed), never str(request.data)",
        )
    return None


def _html_page(body: str, seen: str) -> Pitfall | None:
    head = body.lstrip()[:200].lower()
    if head.startswith("<") or "<html" in head or "<!doctype" in head:
        return Pitfall(
            "html-page",
            f"body is an HTML page ({seen}), not the seed: an error page or a default page",
            "make GET / return only the seed number; look at what serves port 5000 "
            "(and at the app's log)",
        )
    return None


def _json_quoted(body: str, seen: str) -> Pitfall | None:
    if _JSON_QUOTED.match(body):
        return Pitfall(
            "json-quoted",
            f"body {seen} is a JSON string in quotes: jsonify() or json.dumps() of the value",
            "return str(seed) (plain text, no quotes); not jsonify(seed) / json.dumps(str(seed))",
        )
    return None


def _json_document(body: str, seen: str) -> Pitfall | None:
    if body.strip().startswith(("{", "[")):
        return Pitfall(
            "json-document",
            f"body {seen} is a JSON document, not a bare integer",
            "return just the number: `return str(seed)`",
        )
    return None


def _padded(body: str, seen: str) -> Pitfall | None:
    if _PADDED.match(body):
        what = "a trailing newline" if body.rstrip(" \t") != body.rstrip() else "whitespace"
        return Pitfall(
            "whitespace",
            f"body {seen} has {what} around the number; the grader compares exactly",
            "return str(seed) with nothing added (no print-style '\\n', no f'{seed}\\n')",
        )
    return None


def _decimal(body: str, seen: str) -> Pitfall | None:
    if _FLOAT.match(body):
        return Pitfall(
            "not-integer",
            f"body {seen} is a decimal number, not an integer",
            "store int(num), not float(num); return str(seed)",
        )
    return None


_SHAPES = (_empty, _other_digits, _bytes_literal, _html_page, _json_quoted, _json_document,
           _padded, _decimal)


# The load balancer's own answers, in the FAQ's terms.
STATUS_FINDINGS: dict[int, Pitfall] = {
    501: Pitfall(
        "http-501",
        "501 Not Implemented: the request did not reach the app as a plain 'GET /' "
        "(FAQ 3: an address with http:// or a port in it)",
        "give the grader the bare DNS name: no http://, no port, no path",
    ),
    502: Pitfall(
        "http-502",
        "502 Bad Gateway: the load balancer reached no working app on its targets "
        "(FAQ 6, 'no traffic goes to the EC2 instances')",
        "on each instance: start the app (FAQ 4); bind it to 0.0.0.0, not 127.0.0.1 "
        "(FAQ 1: flask run --host=0.0.0.0); let the instances' security group allow TCP 5000 "
        "from the load balancer's security group",
    ),
    503: Pitfall(
        "http-503",
        "503 Service Unavailable: the target group has no healthy target "
        "(FAQ 4, 'OutOfService')",
        "register both instances in the target group on port 5000, ssh in and run the app on "
        "each (FAQ 4), and check the health check's path returns 200",
    ),
    504: Pitfall(
        "http-504",
        "504 Gateway Timeout: a target did not answer the load balancer in time",
        "let the instances' security group allow TCP 5000 from the load balancer (a blocked "
        "port times out), and make sure the app is not hung",
    ),
    500: Pitfall(
        "http-500",
        "500 Internal Server Error: the app itself raised an exception",
        "read the app's log on the instance; common causes: returning an int from the view "
        "(Flask raises TypeError: return str(seed)), and parsing the body (FAQ 6)",
    ),
    404: Pitfall(
        "http-404",
        "404 Not Found: no route for '/'",
        "serve the seed at '/' (@app.route('/', methods=['GET', 'POST'])), and check the "
        "listener forwards to the target group",
    ),
    405: Pitfall(
        "http-405",
        "405 Method Not Allowed",
        "allow both methods on '/': @app.route('/', methods=['GET', 'POST'])",
    ),
}


def explain_status(status: int) -> Pitfall:
    if status in STATUS_FINDINGS:
        return STATUS_FINDINGS[status]
    if 300 <= status < 400:
        return Pitfall(
            "redirect",
            f"{status} redirect: the grader expects the seed at '/' itself",
            "remove the redirect (listener rule or app) so that GET / answers 200",
        )
    return Pitfall(
        f"http-{status}",
        f"unexpected status {status}",
        "GET / must return 200 with the seed; look at the app's log and the listener's rules",
    )


def explain_post_failure(status: int, style: str, other_style_ok: bool) -> Pitfall:
    """A POST that did not return 2xx, named after the way it was sent."""
    if style == "data" and other_style_ok and status in (400, 415, 500):
        return Pitfall(
            "post-needs-json-content-type",
            f"POST with data=json.dumps(...) and no Content-Type got {status}, while json= "
            "worked: the app only parses bodies labelled application/json "
            "(request.get_json() / request.json without force=True)",
            "parse with request.get_json(force=True), which ignores the Content-Type",
        )
    if status == 405:
        return Pitfall(
            "post-not-allowed",
            "POST / got 405: the route does not accept POST",
            "@app.route('/', methods=['GET', 'POST'])",
        )
    if status in (501, 502, 503, 504):
        return Pitfall(f"post-http-{status}", explain_status(status).reason,
                       explain_status(status).fix)
    label = "json=" if style == "json" else "data=json.dumps(...)"
    return Pitfall(
        "post-rejected",
        f"POST / with {label} got {status}",
        "parse the body with request.get_json(force=True) and store int(data['num']); "
        "return 200",
    )


FORM_READER = Pitfall(
    "post-reads-form",
    "POST / with a JSON body fails but a form-encoded one works: the app reads request.form, "
    "and graders send JSON ({\"num\": N})",
    "parse with request.get_json(force=True) and read data['num']",
)


# No usable HTTP answer, by what the connection did or which limit the answer broke: one
# finding for each TransportError (a test keeps it so). The probe's `detail` (what was
# seen) goes before the reason.
_TLS_REASON = "this port speaks HTTPS; the autograder uses plain HTTP on port 80"
_E = TransportError
TRANSPORT_FINDINGS: dict[TransportError, Pitfall] = {
    _E.READ_TIMEOUT: Pitfall(
        _E.READ_TIMEOUT,
        "the connection opened but no HTTP answer came within the timeout: the app is hung, "
        "or what listens is not an HTTP server",
        "restart the app on each instance and try GET / there (curl http://IP:5000/); "
        "a load balancer's target timeout shows as 504",
    ),
    _E.SLOW_RESPONSE: Pitfall(
        _E.SLOW_RESPONSE,
        "the answer trickled in and was not complete within the request's deadline",
        "the app must answer GET / at once; look for a proxy or app that streams slowly",
    ),
    _E.RUN_DEADLINE: Pitfall(
        _E.RUN_DEADLINE,
        "the grade's whole-run deadline passed in the middle of this request",
        "answer each request quickly (milliseconds); or raise --deadline for a slow link",
    ),
    _E.BUDGET: Pitfall(
        _E.BUDGET,
        "the grade's cap of requests was used up before this request",
        "answer every request at once, and the first time (2xx): then a grade needs about "
        "26 requests",
    ),
    _E.NO_RESPONSE: Pitfall(
        _E.NO_RESPONSE,
        "the server closed the connection without an HTTP answer",
        "make sure the app (not something else) listens there; read the app's log",
    ),
    _E.RESET: Pitfall(
        _E.RESET, "the connection was reset", "make sure the app listens there; read its log"
    ),
    _E.CUT_OFF: Pitfall(
        _E.CUT_OFF,
        "the answer was cut off before it was complete",
        "make sure the app answers with a complete response; read its log",
    ),
    _E.BAD_STATUS_LINE: Pitfall(
        _E.BAD_STATUS_LINE,
        "the server's answer is not HTTP/1.x: something other than an HTTP server (or the "
        "app) answers on this port",
        "point the listener (or the port) at the app: `python -m app` or `flask run "
        "--host=0.0.0.0`, which answer HTTP",
    ),
    _E.TLS_PORT: Pitfall(
        _E.TLS_PORT, _TLS_REASON,
        "add a plain HTTP listener on port 80 to the load balancer, forwarding to the "
        "target group (an HTTPS listener alone is not graded)",
    ),
    _E.TOO_MANY_INTERIM: Pitfall(
        _E.TOO_MANY_INTERIM,
        "the server sent interim (1xx) answers without end instead of an answer",
        "answer GET / with 200 and the seed; do not send 100 Continue unasked",
    ),
    _E.TOO_MANY_HEADERS: Pitfall(
        _E.TOO_MANY_HEADERS, "the answer has more headers than any client accepts",
        "send a few headers only; look at what the app or a proxy adds",
    ),
    _E.HEADERS_TOO_LARGE: Pitfall(
        _E.HEADERS_TOO_LARGE, "the answer's headers are larger than any client accepts",
        "send short headers; look at what the app or a proxy adds (cookies?)",
    ),
    _E.BAD_HEADER: Pitfall(
        _E.BAD_HEADER, "the answer has a malformed header line",
        "let the app's server (gunicorn, flask run) write the headers",
    ),
    _E.BAD_FRAMING: Pitfall(
        _E.BAD_FRAMING, "the body's framing (Content-Length or chunks) is malformed",
        "let the app's server (gunicorn, flask run) frame the body",
    ),
    _E.BAD_ENCODING: Pitfall(
        _E.BAD_ENCODING, "the body's Content-Encoding cannot be decoded",
        "send the body as plain text (no Content-Encoding), or valid gzip",
    ),
    _E.CONNECT_TIMEOUT: Pitfall(
        _E.CONNECT_TIMEOUT, "TCP connect timed out",
        "let the security group allow TCP on this port from anywhere (0.0.0.0/0)",
    ),
    _E.REFUSED: Pitfall(
        _E.REFUSED, "connection refused: nothing listens there",
        "start the app (or the listener) on that port",
    ),
    _E.CONNECTION: Pitfall(
        _E.CONNECTION, "the connection failed before an answer (the network cannot reach "
        "the address, or dropped the connection)",
        "check the address and your network",
    ),
    _E.DNS: Pitfall(_E.DNS, "the name does not resolve", "check the DNS name"),
    _E.DNS_TIMEOUT: Pitfall(
        _E.DNS_TIMEOUT, "the name lookup did not finish in time",
        "check the DNS name, and your resolver",
    ),
    _E.NOT_PUBLIC: Pitfall(
        _E.NOT_PUBLIC,
        "the grader sent nothing to it: a class run and Gradescope grade public addresses "
        "only, as the autograder reaches the load balancer over the internet",
        "submit the internet-facing load balancer's DNS name as the console shows it "
        "(name-123.region.elb.amazonaws.com), not a private, loopback or metadata address",
    ),
    _E.LOOPBACK_ONLY: Pitfall(
        _E.LOOPBACK_ONLY, "this run grades loopback addresses only",
        "unset SEEDLB_LOOPBACK_ONLY to grade an address on the network",
    ),
}


def transport_finding(error: TransportError, detail: str) -> Pitfall:
    """The finding for an Exchange's error, with what was seen in front of it."""
    base = TRANSPORT_FINDINGS[error]
    reason = f"{detail}: {base.reason}" if detail else base.reason
    return Pitfall(base.code, reason, base.fix)
