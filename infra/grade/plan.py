"""The grader's plan: which requests it sends, in which order, and the transcript of what
came back (the checks in checks.py judge it; nothing here judges).

    connect     the name is looked up once and one TCP connection opened (check 1)
    2 GETs      check 2 and 3; a second GET may meet the other instance
    spread      4 POSTs of distinct numbers, alternating both styles, then 6 GETs: each
                instance keeps the last number it got, so distinct values = distinct
                instances (check 5)
    json, data  POST N1 with json= until every instance took it, then GETs; the same with
                N2 and data= (check 4); a form POST when both styles failed
    instances   one GET per instance, in parallel (check 6)

It ends the way the real grader does: every instance holding the last number it POSTed.
Every phase is bounded, and so is the whole run: the request budget keeps one request per
instance for the last phase, and the run deadline one request's time.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from infra.grade.address import Address, Endpoint
from infra.grade.http_answer import Exchange, Limits
from infra.grade.http_probe import ProbeClient, Style
from infra.grade.pitfalls import show_body, value_of
from infra.grade.transport import (
    BudgetExhausted,
    Deadline,
    DeadlineReached,
    ProbeError,
    Stop,
    TransportError,
    tcp_connect,
)

# An answer that may be a TLS server's reaction to plain HTTP: worth one handshake to ask.
# (A TLS alert or handshake record that comes back is recognized by the probe itself.)
_MAYBE_TLS = {TransportError.RESET, TransportError.NO_RESPONSE, TransportError.CUT_OFF}
STYLES = (Style.JSON, Style.DATA)  # both ways graders send {"num": N} (check 4)


@dataclass
class Connection:
    """Check 1's probe: the addresses the name resolves to, and one TCP connect."""

    ips: list[str] = field(default_factory=list)
    sockaddr: tuple = ()
    seconds: float = 0.0  # the connect's deadline
    took: float | None = None  # None: it failed (error)
    error: ProbeError | None = None


@dataclass
class StyleRun:
    """One number POSTed in one style until every known instance took it, then GETs."""

    num: int
    posts: list[Exchange] = field(default_factory=list)
    gets: list[Exchange] = field(default_factory=list)
    rounds: int = 0
    finished: bool = False  # False: a run-wide limit stopped it


@dataclass
class Transcript:
    """Everything one grade sent and got back, for the checks to judge."""

    address: Address
    instances: list[Endpoint]
    connection: Connection = field(default_factory=Connection)
    log: list[Exchange] = field(default_factory=list)  # the load balancer's, in order
    stopped: TransportError | None = None  # why the load balancer got no more requests
    cut_short: str = ""  # a run-wide limit that ended the run early (budget, deadline)
    spread_posts: list[Exchange] = field(default_factory=list)
    spread_gets: list[Exchange] = field(default_factory=list)
    spread_finished: bool = False
    styles: dict[Style, StyleRun] = field(default_factory=dict)
    form_probe: Exchange | None = None
    final_value: int | None = None  # what every instance holds at the end, if known
    instance_answers: list[Exchange] = field(default_factory=list)

    def gets(self) -> list[Exchange]:
        return [e for e in self.log if e.method == "GET"]

    def backends(self) -> set[str]:
        """The instances that answered through the load balancer, by X-Served-By."""
        return {e.served_by for e in self.log if e.ok and e.served_by}

    def header_mode(self) -> bool:
        """Whether every 2xx through the load balancer named its instance."""
        answered = [e for e in self.log if e.ok]
        return bool(answered) and all(e.served_by for e in answered)

    def count_by_values(self) -> tuple[int, int]:
        """(instances the spread GETs' values show, values that mark none).

        Each instance holds the last number it got: a POSTed value marks one instance, an
        old value seen twice one that missed every POST. Values never POSTed that change
        from GET to GET mark no instance at all: a random or counting server.
        """
        posted = {p.sent for p in self.spread_posts if p.ok}
        values = Counter(value_of(g) for g in self.spread_gets if value_of(g) is not None)
        held = [v for v in values if v in posted]
        stale = [v for v, n in values.items() if v not in posted and n >= 2]
        one_off = sum(1 for v, n in values.items() if v not in posted and n == 1)
        return len(held) + len(stale) + (1 if one_off == 1 else 0), one_off


class RequestPlan:
    """Sends one grade's requests, in order, within its budget and deadline."""

    def __init__(self, address: Address, instances: list[Endpoint], *, timeout: float,
                 budget: int, deadline: float, rng: random.Random,
                 cancel: threading.Event | None, limits: Limits, public_only: bool):
        self.deadline = Deadline(deadline)
        self.client = ProbeClient(timeout, budget, self.deadline, cancel, limits, public_only)
        self.timeout = timeout
        self.rng = rng
        self.t = Transcript(address, instances)

    def run(self) -> Transcript:
        t = self.t
        if self.connect():
            try:
                self.lb_gets(2)
                if any(e.status == 200 for e in t.gets()):
                    base = self.rng.randrange(10_000_000, 90_000_000)
                    self.probe_spread(base)
                    for style, offset in zip(STYLES, (100, 200), strict=True):
                        self.probe_style(style, base + offset)
                    self.probe_form_if_both_fail(base + 300)
            except Stop as stop:
                if not t.stopped:
                    t.cut_short = self._why_cut(stop)
        self.probe_instances()
        return t

    def _why_cut(self, stop: Stop) -> str:
        if isinstance(stop, BudgetExhausted):
            return (f"the cap of {self.client.budget} requests was reached "
                    f"({len(self.t.instances)} kept for the instances)")
        return (f"the run deadline of {self.deadline.seconds:g} s was reached "
                f"(after {self.client.count} requests; --deadline sets it)")

    # -- sending --------------------------------------------------------------------------
    def connect(self) -> bool:
        """Look the name up (the one lookup every request of this grade uses: no
        rebinding) and open one TCP connection."""
        c = self.t.connection
        try:
            found = self.client.addresses(self.t.address.endpoint)
        except ProbeError as exc:
            c.error = exc
            return False
        c.ips = sorted({addr[0] for _, addr in found})
        family, c.sockaddr = found[0]
        c.seconds = max(0.01, min(self.timeout, self.deadline.remaining()))
        try:
            c.took = tcp_connect(family, c.sockaddr, c.seconds, self.client.cancel)
        except ProbeError as exc:
            c.error = exc
            return False
        return True

    def reserve(self) -> int:
        return len(self.t.instances)  # keep one request per instance for check 6

    def lb(self, method: str, style: Style | None = None, num: int | None = None) -> Exchange:
        t = self.t
        if t.stopped or self.client.remaining() <= self.reserve():
            raise BudgetExhausted
        if t.instances and self.deadline.remaining() < self.timeout + 0.1:
            raise DeadlineReached  # keep one request's time for the instances (check 6)
        ex = self.client.send(method, t.address.endpoint, "lb", style, num)
        if ex.error == TransportError.RUN_DEADLINE:  # our limit, not the server's answer
            raise DeadlineReached
        t.log.append(ex)
        if ex.error:  # no usable answer: don't wait out more timeouts on a dead address
            t.stopped = ex.error
            if ex.error in _MAYBE_TLS and len(t.log) == 1:
                self.ask_tls(ex)
        elif ex.status == 400 and re.search(r"\bhttps\b", ex.body[:2000], re.IGNORECASE):
            # Go's and nginx's answer to plain HTTP on a TLS port: "Client sent an HTTP
            # request to an HTTPS server", "The plain HTTP request was sent to HTTPS port"
            ex.fail(TransportError.TLS_PORT, f"400 with {show_body(ex.body)}")
            t.stopped = ex.error
        return ex

    def ask_tls(self, ex: Exchange) -> None:
        """A first answer that failed the way a TLS port fails plain HTTP: one handshake."""
        if self.client.speaks_tls(self.t.address.endpoint):  # counted in the request budget
            ex.fail(TransportError.TLS_PORT, f"plain HTTP got: {ex.detail or ex.error}; a "
                    "TLS handshake on the same port succeeds")
            self.t.stopped = ex.error

    def lb_gets(self, n: int) -> list[Exchange]:
        out = []
        for _ in range(n):
            if self.t.stopped or self.client.remaining() <= self.reserve():
                break
            out.append(self.lb("GET"))
        return out

    # -- the phases -----------------------------------------------------------------------
    def probe_spread(self, base: int) -> None:
        # Distinct numbers, alternating both POST styles: each instance keeps the last one it
        # got, so the distinct values GET returns afterwards count the instances.
        for i in range(4):
            self.t.spread_posts.append(self.lb("POST", STYLES[i % 2], base + i))
        self.t.spread_gets = self.lb_gets(6)
        self.t.spread_finished = True

    def probe_style(self, style: Style, num: int) -> None:
        """POST num in one style until every known instance took it, then GET to confirm."""
        run = self.t.styles[style] = StyleRun(num)
        for _ in range(2):  # a second round only when the first left stale instances
            run.rounds += 1
            run.posts += self._post_until_covered(style, num)
            if not any(p.ok for p in run.posts):
                break  # this style is refused: check 4 says how; no GETs needed
            run.gets = self.lb_gets(max(4, 2 * len(self.t.backends())))
            stale = [g for g in run.gets if value_of(g) not in (None, num)]
            acked = {p.served_by for p in run.posts if p.ok}
            if not stale:
                break
            if self.t.header_mode() and all(g.served_by in acked for g in stale):
                break  # they took it and still return the old number: no point in resending
        if run.gets and all(value_of(g) == num for g in run.gets):
            self.t.final_value = num
        run.finished = True  # a Stop above leaves it unfinished

    def _post_until_covered(self, style: Style, num: int) -> list[Exchange]:
        posts: list[Exchange] = []
        if self.t.header_mode():
            target = max(2, len(self.t.backends()))
            limit = min(8, 4 * target)  # random balancing misses one of 2 in 8 sends: 1%
            while len(posts) < limit:
                posts.append(self.lb("POST", style, num))
                if not posts[-1].ok:
                    break  # refused: repeating will not change the answer
                acked = {p.served_by for p in posts}
                if len(posts) >= target and self.t.backends() <= acked:
                    break
        else:
            # Nothing names the instance: repeat; with 2 instances 4 sends reach both under
            # round robin (the ALB's default), and the GETs after confirm it.
            estimate = max(2, min(4, self.t.count_by_values()[0]))
            for _ in range(2 * estimate):
                posts.append(self.lb("POST", style, num))
                if not posts[-1].ok:
                    break
        return posts

    def probe_form_if_both_fail(self, num: int) -> None:
        runs = self.t.styles.values()
        if runs and all(not any(p.ok for p in r.posts) for r in runs):
            self.t.form_probe = self.lb("POST", Style.FORM, num)

    def probe_instances(self) -> None:
        """One GET per instance, in parallel; a Stop becomes that instance's answer."""
        if not self.t.instances:
            return

        def probe(endpoint: Endpoint) -> Exchange:
            try:
                return self.client.send("GET", endpoint, str(endpoint))
            except BudgetExhausted:
                ex = Exchange("GET", str(endpoint))
                ex.fail(TransportError.BUDGET,
                        f"the run's {self.client.budget} requests were used up")
            except DeadlineReached:
                ex = Exchange("GET", str(endpoint))
                ex.fail(TransportError.RUN_DEADLINE, f"the run deadline of "
                        f"{self.deadline.seconds:g} s was reached before this instance "
                        "was asked")
            return ex

        with ThreadPoolExecutor(max_workers=min(8, len(self.t.instances))) as pool:
            self.t.instance_answers = list(pool.map(probe, self.t.instances))
