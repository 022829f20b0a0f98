"""Bad input against a running `python -m app`: a fixed corpus plus hypothesis-made bodies.

For every distinct request: read the seed, send the request, read the seed again. A 5xx
is a bug (the app must say 400/404/405/413, never crash); so is a request that was refused
(status >= 400) or that does not set the seed at all (not `POST /`) and yet changed it.
Some odd-looking bodies are valid on purpose (`{"num": "007"}`, the form `num=5`): they are
counted as accepted, not as failures.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import requests

MARKER_SEED = 7919  # a seed no probe is likely to set by accident

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class BadInputProbe:
    """One HTTP request. `raw` probes are sent byte for byte over a socket."""

    method: str = "POST"
    path: str = "/"
    body: bytes = b""
    content_type: str | None = JSON
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None
    chunked: bool = False

    @property
    def sets_seed(self) -> bool:
        """A request that may change the seed if it is accepted: POST to /."""
        if self.raw is not None:
            return self.raw.startswith(b"POST / ")
        return self.method == "POST" and self.path.split("?")[0] == "/"


@dataclass
class BadInputResult:
    tried: int = 0
    from_corpus: int = 0
    generated: int = 0
    accepted: int = 0  # valid after all (an integral string, a form): the seed may change
    rejected: int = 0  # 4xx
    server_errors: int = 0  # 5xx: must stay 0
    no_response: int = 0  # connection closed or timed out without a status line
    changed_on_reject: int = 0  # must stay 0
    statuses: Counter = field(default_factory=Counter)
    examples_5xx: list[str] = field(default_factory=list)
    examples_changed: list[str] = field(default_factory=list)


def _j(value: object) -> bytes:
    return json.dumps(value).encode()


def corpus() -> list[BadInputProbe]:
    """The fixed corpus: every kind of wrong body a grader or a person has sent."""
    bodies: list[bytes] = [
        b"", b" ", b"\n", b"{", b"}", b"[", b'{"num":', b'{"num": }', b"{'num': 5}",
        b"{num: 5}", b'{"num" 5}', b'{"num": 5,}', b"null", b"true", b"false", b"5", b"-5",
        b'"5"', b"[]", b"[5]", b'[{"num": 5}]', b"{}", b'{"num": null}', b'{"num": true}',
        b'{"num": false}', b'{"num": 1.5}', b'{"num": 1.0}', b'{"num": 1e3}', b'{"num": -0.0}',
        b'{"num": 1E400}', b'{"num": NaN}', b'{"num": Infinity}', b'{"num": -Infinity}',
        b'{"num": [1]}', b'{"num": []}', b'{"num": {}}', b'{"num": {"num": 1}}',
        b'{"num": "abc"}', b'{"num": ""}', b'{"num": " "}', b'{"num": "1.5"}', b'{"num": "1e3"}',
        b'{"num": "0x10"}', b'{"num": "1_000"}', _j({"num": "\u0661\u0662"}),
        b'{"num": "12 34"}', b'{"num": "--5"}', b'{"num": "+-5"}', b'{"num": "5\\u0000"}',
        b'{"NUM": 5}', b'{"number": 5}', b'{"num ": 5}', b'{"Num": 5}', b'{"nu\\u006d": "x"}',
        b'{"num": "\\ud800"}', b'{"num": 5} x', b'{"num": 5}{"num": 6}', b'{"num": 5}\x00',
        b"\x00", b"\xff\xfe\x00", b"\xc3\x28", b"\xc0\xaf", b'{"num": "\xff"}',
        b'{"num": 5\xff}', '{"num": 5}'.encode("utf-16"), '{"num": 5}'.encode("utf-32"),
        b"\xef\xbb\xbf\xef\xbb\xbf{}",
        # Integers just past what int() converts, as a number and as a string.
        b'{"num": ' + b"9" * 4301 + b"}", b'{"num": -' + b"9" * 4301 + b"}",
        b'{"num": "' + b"9" * 4301 + b'"}', b'{"num": ' + b"1" * 60000 + b"}",
        # Deep nesting: json's recursion limit.
        b"[" * 20000 + b"]" * 20000, b'{"num": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        # Over the body limit, valid JSON inside: 413, never stored.
        b'{"num": 5, "pad": "' + b"x" * (1 << 20) + b'"}', b" " * (8 << 20) + b'{"num": 6}',
    ]
    probes = [BadInputProbe(body=b) for b in bodies]
    forms = [b"num=", b"num=abc", b"num=1&num=2", b"num=1.5", b"%zz=1", b"num=%ff", b"=&=&",
             b"num", b"num=1e3", b"num=0x1f", b"num=" + b"9" * 4301, b"a=1&b=2"]
    probes += [BadInputProbe(body=b, content_type=FORM) for b in forms]
    for ctype in (None, "text/plain", "application/json; charset=utf-16",
                  "multipart/form-data; boundary=xyz", "application/octet-stream"):
        probes += [BadInputProbe(body=b"not json", content_type=ctype),
                   BadInputProbe(body=b'{"num": null}', content_type=ctype)]
    probes += [
        BadInputProbe(
            body=b'--xyz\r\nContent-Disposition: form-data; name="num"\r\n\r\nabc\r\n--xyz--',
            content_type="multipart/form-data; boundary=xyz"),
        BadInputProbe(body=b'{"num": []}', headers=(("Content-Encoding", "gzip"),)),
        BadInputProbe(body=b'{"num": true}', headers=(("Expect", "100-continue"),)),
        BadInputProbe(body=b'{"num": "x"}', chunked=True),
        BadInputProbe(body=b"", chunked=True),
    ]
    for method, path in (("PUT", "/"), ("DELETE", "/"), ("PATCH", "/"), ("POST", "/health"),
                         ("POST", "/seed"), ("GET", "/?num=5"),
                         ("POST", "/?num=5"), ("OPTIONS", "/"), ("POST", "/" + "a" * 5000)):
        probes.append(BadInputProbe(method=method, path=path, body=b'{"num": 11}'))
    probes += [BadInputProbe(raw=raw) for raw in _raw_requests()]
    return probes


def _raw_requests() -> list[bytes]:
    """Requests no HTTP client library would send: the server's parser must refuse them."""
    ok = b'{"num": 5}'
    return [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n"
        b"\r\n" + ok,
        b"POST / HTTP/9.9\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\nContent-Length: 10\r\n\r\n" + ok,
        b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\nContent-Length: 10\r\n\r\n"
        + ok,
        b"POST /\x00 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + ok,
    ]


def generated(max_examples: int, seed: int) -> list[BadInputProbe]:
    """Bodies made by hypothesis: odd `num` values, odd JSON documents, random bytes."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
               | st.text(max_size=20))
    documents = st.recursive(scalars | st.integers(),
                             lambda inner: st.lists(inner, max_size=4)
                             | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                             max_leaves=10)
    num_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                              max_leaves=6)

    def dump(value: object) -> bytes:
        return json.dumps(value, allow_nan=True).encode()

    def mutate(pair: tuple[int, bytes]) -> bytes:
        at, junk = pair
        valid = b'{"num": 100}'
        at %= len(valid) + 1
        return valid[:at] + junk + valid[at:]

    def long_int(pair: tuple[str, int]) -> bytes:
        # Past int()'s 4300-digit limit; written by hand, json.dumps would refuse it.
        sign, digits = pair
        return f'{{"num": {sign}{"7" * digits}}}'.encode()

    bodies = st.one_of(
        st.tuples(st.sampled_from(["", "-"]), st.integers(4290, 4400)).map(long_int),
        num_values.map(lambda v: dump({"num": v})),
        documents.filter(lambda d: not (isinstance(d, dict) and "num" in d)).map(dump),
        st.binary(max_size=64),
        st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.tuples(st.integers(0, 20), st.binary(min_size=1, max_size=4)).map(mutate),
    )
    ctypes = st.sampled_from([JSON, FORM, "text/plain", None])
    found: list[BadInputProbe] = []

    @hseed(seed)
    @settings(max_examples=max_examples, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=ctypes)
    def collect(body: bytes, content_type: str | None) -> None:
        found.append(BadInputProbe(body=body, content_type=content_type))

    collect()
    return found


def distinct(probes: Iterable[BadInputProbe]) -> Iterator[BadInputProbe]:
    seen: set[BadInputProbe] = set()
    for probe in probes:
        if probe not in seen:
            seen.add(probe)
            yield probe


def send(base_url: str, probe: BadInputProbe, session: requests.Session,
         timeout: float = 5.0) -> int | None:
    """The status code, or None when the server answered nothing usable."""
    if probe.raw is not None:
        return _send_raw(base_url, probe.raw, timeout)
    headers = dict(probe.headers)
    if probe.content_type is not None:
        headers["Content-Type"] = probe.content_type
    data: object = probe.body
    if probe.chunked:
        data = iter([probe.body]) if probe.body else iter([])
    try:
        resp = session.request(probe.method, base_url + probe.path, data=data,
                               headers=headers, timeout=timeout)
    except requests.RequestException:
        return None
    return resp.status_code


def _send_raw(base_url: str, raw: bytes, timeout: float) -> int | None:
    host, port = base_url.split("//", 1)[1].split(":")
    try:
        with socket.create_connection((host, int(port.rstrip("/"))), timeout=timeout) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            reply = sock.recv(64)
    except OSError:
        return None
    parts = reply.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def describe(probe: BadInputProbe, limit: int = 80) -> str:
    shown = probe.raw if probe.raw is not None else probe.body
    text = repr(shown[:limit]) + ("..." if len(shown) > limit else "")
    if probe.raw is not None:
        return f"raw {text}"
    return f"{probe.method} {probe.path[:40]} [{probe.content_type}] {text}"


def run_bad_input(base_url: str, *, max_examples: int = 300, seed: int = 6,
                  progress=print) -> BadInputResult:
    result = BadInputResult()
    fixed = corpus()
    made = generated(max_examples, seed)
    with requests.Session() as session:
        # Probes share one keep-alive session (fast); the seed is read over a fresh
        # connection each time, so a probe that leaves the session's connection in a bad
        # state cannot hide a change.
        def read_seed() -> str:
            return requests.get(base_url + "/", timeout=5).text

        requests.post(base_url + "/", json={"num": MARKER_SEED}, timeout=5).raise_for_status()
        before = read_seed()
        probes = list(distinct([*fixed, *made]))
        fixed_set = set(fixed)
        progress(f"  {len(probes)} distinct requests ({sum(p in fixed_set for p in probes)} "
                 f"fixed, the rest from hypothesis)")
        for probe in probes:
            status = send(base_url, probe, session)
            result.tried += 1
            if probe in fixed_set:
                result.from_corpus += 1
            else:
                result.generated += 1
            result.statuses[status if status is not None else "none"] += 1
            after = read_seed()
            if status is None:
                result.no_response += 1
                session.close()  # drop a connection the probe may have left half-used
            elif status >= 500:
                result.server_errors += 1
                result.examples_5xx.append(f"{status}: {describe(probe)}")
            refused = status is None or status >= 400 or not probe.sets_seed
            if refused:
                result.rejected += status is not None and 400 <= status < 500
                if after != before:
                    result.changed_on_reject += 1
                    result.examples_changed.append(f"{before} -> {after}: {describe(probe)}")
            else:
                result.accepted += 1
            before = after
    return result
