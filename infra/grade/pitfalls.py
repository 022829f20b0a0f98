"""The ways students fail the autograder, recognized from what came back over HTTP.

Each finding has a stable `code` (tests and `--json` users match on it), a one-line reason
and a fix, in the terms of the seed document's FAQ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# fullmatch, ASCII digits: `$` alone would let a trailing "\n" through
BARE_INTEGER = re.compile(r"-?[0-9]+")
_BYTES_LITERAL = re.compile(r"""^\s*b(['"]).*\1\s*$""", re.DOTALL)
_JSON_QUOTED = re.compile(r'^\s*"\s*-?\d+\s*"\s*$')
_PADDED = re.compile(r"^\s*-?\d+\s*$")
_FLOAT = re.compile(r"^\s*-?\d+\.\d*\s*$")
_ANY_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Finding:
    code: str
    reason: str
    fix: str


def lenient_value(body: str) -> int | None:
    """The integer a body most likely means, whatever its wrapping (for comparing values
    while the format itself is judged separately): '100', '"100"\\n', "b'\\"100\\"\\n'"."""
    match = _ANY_INTEGER.search(body)
    if match is None or len(_ANY_INTEGER.findall(body)) != 1:
        return None
    return int(match.group())


def show_body(body: str, limit: int = 60) -> str:
    """The body as the user would recognize it: verbatim in backquotes when it is one line
    of printable text (so a bytes literal reads b'"1000"\\n'), else repr() (a real newline)."""
    cut = body[:limit]
    more = "..." if len(body) > limit else ""
    if cut and cut.isprintable() and "`" not in cut:
        return f"`{cut}`{more}"
    return repr(cut) + more


def classify_body(body: str, content_type: str) -> Finding | None:
    """None when the body is what the grader wants: exactly `^-?\\d+$`, not labelled JSON."""
    shown = show_body(body)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if BARE_INTEGER.fullmatch(body):
        if ctype == "application/json" or ctype.endswith("+json"):
            return Finding(
                "json-content-type",
                f"body {shown} is bare, but Content-Type is {ctype}: the seed is plain text, "
                "and a client that trusts the label parses JSON",
                "return the number as text, e.g. `return str(seed)` (Flask labels it text/html)"
                " or with {'Content-Type': 'text/plain'}; not jsonify()",
            )
        return None
    if not body:
        return Finding("empty-body", "the body is empty", "return the seed: `return str(seed)`")
    if _BYTES_LITERAL.match(body):
        return Finding(
            "bytes-literal",
            f"body {shown} is a Python bytes literal: str() of bytes (FAQ 6, b'\"1000\"\\n')",
            "decode instead of str(): parse the POST with request.get_json(force=True) and "
            "store int(data['num']); return str(seed), never str(request.data)",
        )
    head = body.lstrip()[:200].lower()
    if head.startswith("<") or "<html" in head or "<!doctype" in head:
        return Finding(
            "html-page",
            f"body is an HTML page ({shown}), not the seed: an error page or a default page",
            "make GET / return only the seed number; look at what serves port 5000 "
            "(and at the app's log)",
        )
    if _JSON_QUOTED.match(body):
        return Finding(
            "json-quoted",
            f"body {shown} is a JSON string in quotes: jsonify() or json.dumps() of the value",
            "return str(seed) (plain text, no quotes); not jsonify(seed) / json.dumps(str(seed))",
        )
    stripped = body.strip()
    if stripped.startswith(("{", "[")):
        return Finding(
            "json-document",
            f"body {shown} is a JSON document, not a bare integer",
            "return just the number: `return str(seed)`",
        )
    if _PADDED.match(body):
        what = "a trailing newline" if body.rstrip(" \t") != body.rstrip() else "whitespace"
        return Finding(
            "whitespace",
            f"body {shown} has {what} around the number; the grader compares exactly",
            "return str(seed) with nothing added (no print-style '\\n', no f'{seed}\\n')",
        )
    if _FLOAT.match(body):
        return Finding(
            "not-integer",
            f"body {shown} is a decimal number, not an integer",
            "store int(num), not float(num); return str(seed)",
        )
    return Finding(
        "not-integer",
        f"body {shown} is not a bare integer (^-?\\d+$)",
        "make GET / return only the seed: `return str(seed)`",
    )


# The load balancer's own answers, in the FAQ's terms.
STATUS_FINDINGS: dict[int, Finding] = {
    501: Finding(
        "http-501",
        "501 Not Implemented: the request did not reach the app as a plain 'GET /' "
        "(FAQ 3: an address with http:// or a port in it)",
        "give the grader the bare DNS name: no http://, no port, no path",
    ),
    502: Finding(
        "http-502",
        "502 Bad Gateway: the load balancer reached no working app on its targets "
        "(FAQ 6, 'no traffic goes to the EC2 instances')",
        "on each instance: start the app (FAQ 4); bind it to 0.0.0.0, not 127.0.0.1 "
        "(FAQ 1: flask run --host=0.0.0.0); let the instances' security group allow TCP 5000 "
        "from the load balancer's security group",
    ),
    503: Finding(
        "http-503",
        "503 Service Unavailable: the target group has no healthy target "
        "(FAQ 4, 'OutOfService')",
        "register both instances in the target group on port 5000, ssh in and run the app on "
        "each (FAQ 4), and check the health check's path returns 200",
    ),
    504: Finding(
        "http-504",
        "504 Gateway Timeout: a target did not answer the load balancer in time",
        "let the instances' security group allow TCP 5000 from the load balancer (a blocked "
        "port times out), and make sure the app is not hung",
    ),
    500: Finding(
        "http-500",
        "500 Internal Server Error: the app itself raised an exception",
        "read the app's log on the instance; common causes: returning an int from the view "
        "(Flask raises TypeError: return str(seed)), and parsing the body (FAQ 6)",
    ),
    404: Finding(
        "http-404",
        "404 Not Found: no route for '/'",
        "serve the seed at '/' (@app.route('/', methods=['GET', 'POST'])), and check the "
        "listener forwards to the target group",
    ),
    405: Finding(
        "http-405",
        "405 Method Not Allowed",
        "allow both methods on '/': @app.route('/', methods=['GET', 'POST'])",
    ),
}


def explain_status(status: int) -> Finding:
    if status in STATUS_FINDINGS:
        return STATUS_FINDINGS[status]
    if 300 <= status < 400:
        return Finding(
            "redirect",
            f"{status} redirect: the grader expects the seed at '/' itself",
            "remove the redirect (listener rule or app) so that GET / answers 200",
        )
    return Finding(
        f"http-{status}",
        f"unexpected status {status}",
        "GET / must return 200 with the seed; look at the app's log and the listener's rules",
    )


def explain_post_failure(status: int, style: str, other_style_ok: bool) -> Finding:
    """A POST that did not return 2xx, named after the way it was sent."""
    if style == "data" and other_style_ok and status in (400, 415, 500):
        return Finding(
            "post-needs-json-content-type",
            f"POST with data=json.dumps(...) and no Content-Type got {status}, while json= "
            "worked: the app only parses bodies labelled application/json "
            "(request.get_json() / request.json without force=True)",
            "parse with request.get_json(force=True), which ignores the Content-Type",
        )
    if status == 405:
        return Finding(
            "post-not-allowed",
            "POST / got 405: the route does not accept POST",
            "@app.route('/', methods=['GET', 'POST'])",
        )
    if status in (501, 502, 503, 504):
        return Finding(f"post-http-{status}", explain_status(status).reason,
                       explain_status(status).fix)
    label = "json=" if style == "json" else "data=json.dumps(...)"
    return Finding(
        "post-rejected",
        f"POST / with {label} got {status}",
        "parse the body with request.get_json(force=True) and store int(data['num']); "
        "return 200",
    )


FORM_READER = Finding(
    "post-reads-form",
    "POST / with a JSON body fails but a form-encoded one works: the app reads request.form, "
    "and graders send JSON ({\"num\": N})",
    "parse with request.get_json(force=True) and read data['num']",
)


# No HTTP answer at all, by what the connection did.
TRANSPORT_FINDINGS = {
    "read-timeout": Finding(
        "read-timeout",
        "the connection opened but no HTTP answer came within the timeout: the app is hung, "
        "or what listens is not an HTTP server",
        "restart the app on each instance and try GET / there (curl http://IP:5000/); "
        "a load balancer's target timeout shows as 504",
    ),
    "no-response": Finding(
        "no-response",
        "the server closed the connection without an HTTP answer",
        "make sure the app (not something else) listens there; read the app's log",
    ),
    "reset": Finding(
        "reset", "the connection was reset", "make sure the app listens there; read its log"
    ),
}
