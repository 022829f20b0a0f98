"""The grader: checks a load balancer over plain HTTP, the way the autograder will.

`grade(address, instances)` runs six checks and returns a Report. It is an HTTP client and
nothing else (AWS is only touched by the CLI's `--aws`, in infra/grade/target_health.py).
The request sequence is planned so that the checks do not corrupt each other, and ends the
way the real grader does: every instance holding the last number it POSTed.

    1 connect       the name resolves and TCP to port 80 opens
    2 GET / 200     every GET / of the run returned 200
    3 body          each body is exactly ^-?\\d+$, not JSON, not a bytes literal, no newline
    4 POST          {"num": N} sent as json= and as data=json.dumps(...) reaches every instance
    5 spread        at least two instances answer through the load balancer
    6 instances     each instance answers directly on :5000 and holds what the LB returns

Sequence: 2 GETs (checks 2, 3); 4 POSTs of distinct numbers, alternating both styles, then
GETs (check 5: each instance keeps the last number it got, so distinct values = distinct
instances); POST N1 with json= until every instance took it, then GETs; the same with
N2 and data=; then one GET per instance (check 6). Every phase is bounded, and so is the
whole run: at most MAX_REQUESTS requests, each within `timeout` seconds (connect, status,
headers and body), all within `deadline` seconds (see http_probe.py for the size limits).
"""

from __future__ import annotations

import ipaddress
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from infra.config import APP_PORT
from infra.grade.address import (
    Address,
    Endpoint,
    parse_address,
    parse_instances,
)
from infra.grade.display import shown
from infra.grade.http_probe import (
    LIMITS,
    SERVED_BY,
    BudgetExhausted,
    Deadline,
    DeadlineReached,
    Exchange,
    Limits,
    ProbeClient,
    ProbeError,
    Stop,
    tcp_connect,
)
from infra.grade.pitfalls import (
    FORM_READER,
    WARNING_CODES,
    Finding,
    classify_body,
    explain_post_failure,
    explain_status,
    show_body,
    transport_finding,
)
from infra.grade.report import FAIL, PASS, SKIP, Check, Report

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_TIMEOUT", "MAX_REQUESTS", "Check", "Report", "grade"]

MAX_REQUESTS = 60  # the grader is a client of somebody's server: never more than this
DEFAULT_TIMEOUT = 3.0  # one request: connect, status line, headers and body
DEFAULT_DEADLINE = 30.0  # the whole run; a dead target costs one timeout, not this
# An answer that may be a TLS server's reaction to plain HTTP: worth one handshake to ask.
# (A TLS alert or handshake record that comes back is recognized by the probe itself.)
_MAYBE_TLS = {"reset", "no-response", "cut-off"}
# What check 2 says when the load balancer got no answer from its targets in time.
_TARGETS_UNREACHED = {"read-timeout", "slow-response", "http-502", "http-504"}
_SG_BLOCKS_LB = "instance-sg-blocks-lb"
STYLE_LABEL = {
    "json": "json={'num': N}",
    "data": "data=json.dumps({'num': N}) (no Content-Type)",
    "form": "form-encoded num=N",
}


class _Grading:
    def __init__(self, address: Address, instances: list[Endpoint], timeout: float,
                 budget: int, rng: random.Random, deadline: float = DEFAULT_DEADLINE,
                 cancel: threading.Event | None = None, limits: Limits = LIMITS,
                 public_only: bool = False):
        self.address = address
        self.instances = instances
        self.deadline = Deadline(deadline)
        self.client = ProbeClient(timeout, budget, self.deadline, cancel, limits, public_only)
        self.timeout = timeout
        self.rng = rng
        self.log: list[Exchange] = []
        self.stopped = ""  # why the LB got no more requests
        self.cut_short = ""  # a run-wide limit that ended the run early (budget, deadline)
        self.finished: set[str] = set()  # the probes that ran to their end
        self.checks = [
            Check(1, f"connects to port {address.port}"),
            Check(2, "GET / returns 200"),
            Check(3, "body is a bare integer"),
            Check(4, "POST / updates every instance"),
            Check(5, "two or more instances serve"),
            Check(6, "instances answer directly"),
        ]
        self.spread_posts: list[Exchange] = []
        self.spread_gets: list[Exchange] = []
        self.style_runs: dict[str, dict] = {}
        self.final_value: int | None = None
        self.form_probe: Exchange | None = None
        self.base = 0

    # -- sending --------------------------------------------------------------------------
    def lb(self, method: str, style: str | None = None, num: int | None = None) -> Exchange:
        if self.stopped or self.client.remaining() <= self.reserve():
            raise BudgetExhausted
        if self.instances and self.deadline.remaining() < self.timeout + 0.1:
            raise DeadlineReached  # keep one request's time for the instances (check 6)
        ex = self.client.send(method, self.address.endpoint, "lb", style, num)
        if ex.error == "run-deadline":  # our limit, not the server's answer: stop here
            raise DeadlineReached
        self.log.append(ex)
        if ex.error:  # no usable answer: don't wait out more timeouts on a dead address
            self.stopped = ex.error
            if ex.error in _MAYBE_TLS and sum(e.target == "lb" for e in self.log) == 1:
                self.ask_tls(ex)
        elif ex.status == 400 and re.search(r"\bhttps\b", ex.body[:2000], re.IGNORECASE):
            # Go's and nginx's answer to plain HTTP on a TLS port: "Client sent an HTTP
            # request to an HTTPS server", "The plain HTTP request was sent to HTTPS port"
            ex.error, ex.detail = "tls-port", f"400 with {show_body(ex.body)}"
            self.stopped = ex.error
        return ex

    def ask_tls(self, ex: Exchange) -> None:
        """A first answer that failed the way a TLS port fails plain HTTP: one handshake."""
        if self.client.speaks_tls(self.address.endpoint):  # counted in the request budget
            ex.error, ex.detail = "tls-port", f"plain HTTP got: {ex.detail or ex.error}; a TLS " \
                "handshake on the same port succeeds"
            self.stopped = ex.error

    def lb_gets(self, n: int) -> list[Exchange]:
        out = []
        for _ in range(n):
            if self.stopped or self.client.remaining() <= self.reserve():
                break
            out.append(self.lb("GET"))
        return out

    def reserve(self) -> int:
        return len(self.instances)  # keep one request per instance for check 6

    def backends(self) -> set[str]:
        """The instances that answered through the load balancer, by X-Served-By."""
        return {e.served_by for e in self.log if e.target == "lb" and e.ok and e.served_by}

    def header_mode(self) -> bool:
        answered = [e for e in self.log if e.target == "lb" and e.ok]
        return bool(answered) and all(e.served_by for e in answered)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        if self.check_connect():
            try:
                self.lb_gets(2)  # checks 2 and 3; a second GET may meet the other instance
                if self.any_get_200():
                    self.probe_spread()
                    for style, offset in (("json", 100), ("data", 200)):
                        self.probe_style(style, self.base + offset)
                    self.probe_form_if_json_fails()
            except Stop as stop:
                if not self.stopped:
                    self.cut_short = self._why_cut(stop)
            self.judge_status()
            self.judge_body()
            self.judge_post()
            self.judge_spread()
            if self.cut_short and self.cut_short not in self.checks[3].reason:
                self.checks[3].details.append(f"stopped early: {self.cut_short}")
        self.check_instances()
        self.read_together()

    def read_together(self) -> None:
        """The six checks read as one diagnosis. A load balancer that gets no answer from its
        targets (check 2) looks like a hung app on its own; check 6 tells which it is: the
        instances answering the grader directly means the app runs and is bound to 0.0.0.0,
        so the path from the load balancer to them is shut (the security groups, FAQ 6)."""
        lb, direct = self.checks[1], self.checks[5]
        if lb.status != FAIL or lb.code not in _TARGETS_UNREACHED:
            return
        port = self.instances[0].port if self.instances else APP_PORT
        first = next(e for e in self.log if e.target == "lb" and e.method == "GET"
                     and (e.error or e.status != 200))
        seen = f"GET / through the load balancer: {first.detail or first.error}" \
            if first.error else f"GET / through the load balancer returned {first.status}"
        if direct.status == PASS:
            lb.set(FAIL, f"{seen}; yet every instance answers GET / directly on :{port} "
                   "(check 6): the app runs, and the load balancer cannot reach it. The "
                   f"instances' security group does not allow TCP {port} from the load "
                   "balancer's security group (FAQ 6, 'no traffic goes to the EC2 instances')",
                   f"in the instances' security group, allow TCP {port} from the load "
                   "balancer's security group (seed step 2), and check that the target group "
                   f"forwards to port {port}; the app itself is fine", _SG_BLOCKS_LB)
        elif direct.status == FAIL and direct.code == "instance-timeout":
            lb.set(FAIL, f"{seen}; and TCP {port} to the instances times out from here too "
                   "(check 6): their security group lets nobody in on the app's port (FAQ 6)",
                   f"in the instances' security group, allow TCP {port} from the load "
                   "balancer's security group (seed step 2); then grade again", _SG_BLOCKS_LB)
        elif direct.status == SKIP and lb.code == "read-timeout":
            lb.details.append("give the instances' public IPs (--instances ip1,ip2): if they "
                              "answer directly, the cause is the security groups (FAQ 6), not "
                              "the app")

    def _why_cut(self, stop: Stop) -> str:
        if isinstance(stop, BudgetExhausted):
            return (f"the cap of {self.client.budget} requests was reached "
                    f"({len(self.instances)} kept for the instances)")
        return (f"the run deadline of {self.deadline.seconds:g} s was reached "
                f"(after {self.client.count} requests; --deadline sets it)")

    def check_connect(self) -> bool:
        check = self.checks[0]
        host, port = self.address.host, self.address.port
        try:  # the same lookup every request of this grade uses: one check, no rebinding
            found = self.client.addresses(self.address.endpoint)
        except ProbeError as exc:
            finding = transport_finding(exc.code, "")
            if exc.code in ("dns", "dns-timeout"):
                check.set(FAIL, exc.detail, "copy the DNS name from the load balancer's "
                          "description; a new load balancer's name takes a minute or two to "
                          "resolve", exc.code)
                self.skip_lb("the name does not resolve")
            elif exc.code == "not-public":  # refused: no byte was sent to it
                check.set(FAIL, f"address is not public: {exc.detail}; {finding.reason}",
                          finding.fix, exc.code)
                self.skip_lb("the address is not public")
            else:
                check.set(FAIL, exc.detail, finding.fix, exc.code)
                self.skip_lb("not a loopback address")
            return False
        ips = sorted({addr[0] for _, addr in found})
        family, sockaddr = found[0]
        seconds = max(0.01, min(self.timeout, self.deadline.remaining()))
        try:
            took = tcp_connect(family, sockaddr, seconds, self.client.cancel)
        except ProbeError as exc:
            self.connect_failed(exc, sockaddr[0], port, ips, seconds)
            return False
        check.set(PASS, f"{shown(host, 80)} resolves to {', '.join(ips)}; TCP {port} opened "
                  f"in {took * 1000:.0f} ms")
        return True

    def connect_failed(self, exc: ProbeError, ip: str, port: int, ips: list[str],
                       seconds: float) -> None:
        check = self.checks[0]
        if exc.code == "connect-timeout":
            private = [a for a in ips if _is_private(a)]
            why = (
                "the load balancer's security group does not allow TCP "
                f"{port} from anywhere (0.0.0.0/0), or the load balancer is internal"
            )
            if private and len(private) == len(ips):
                why += f" (it resolves to private addresses {', '.join(private)}: internal)"
            check.set(FAIL, f"TCP connect to {ip}:{port} timed out after {seconds:g} s: {why}",
                      f"give the load balancer its own security group allowing HTTP {port} from "
                      "0.0.0.0/0 (not the default group), scheme internet-facing; and run the "
                      "grader from your own machine, not from one of the instances (FAQ 5)",
                      "connect-timeout")
            self.skip_lb("TCP connect timed out")
        elif exc.code == "refused":
            check.set(FAIL, f"{ip}:{port} refused the connection: nothing listens on "
                      f"port {port}",
                      f"add an HTTP listener on port {port} to the load balancer, forwarding to "
                      "the target group", "refused")
            self.skip_lb("the connection was refused")
        else:
            check.set(FAIL, f"cannot connect to {ip}:{port}: {exc.detail}",
                      "check the address and your network", "connect-error")
            self.skip_lb("no connection")

    def skip_lb(self, why: str) -> None:
        for c in self.checks[1:5]:
            c.set(SKIP, f"not run: {why} (check 1)")

    def any_get_200(self) -> bool:
        return any(e.status == 200 for e in self.log if e.method == "GET")

    def probe_spread(self) -> None:
        # Distinct numbers, alternating both POST styles: each instance keeps the last one it
        # got, so the distinct values GET returns afterwards count the instances.
        self.base = self.rng.randrange(10_000_000, 90_000_000)
        for i in range(4):
            style = "json" if i % 2 == 0 else "data"
            self.spread_posts.append(self.lb("POST", style, self.base + i))
        self.spread_gets = self.lb_gets(6)
        self.finished.add("spread")

    def probe_style(self, style: str, num: int) -> None:
        """POST num in one style until every known instance took it, then GET to confirm."""
        run = {"num": num, "posts": [], "gets": [], "rounds": 0}
        self.style_runs[style] = run
        self._probe_style(style, num, run)  # a Stop leaves it unfinished
        self.finished.add(style)

    def _probe_style(self, style: str, num: int, run: dict) -> None:
        for _ in range(2):  # a second round only when the first left stale instances
            run["rounds"] += 1
            run["posts"] += self._post_until_covered(style, num)
            if not any(p.ok for p in run["posts"]):
                return  # this style is refused: check 4 says how; no GETs needed
            known = self.backends()
            gets = self.lb_gets(max(4, 2 * len(known)))
            run["gets"] = gets
            stale = [g for g in gets if g.value is not None and g.value != num]
            acked = {p.served_by for p in run["posts"] if p.ok}
            if not stale:
                break
            if self.header_mode() and all(g.served_by in acked for g in stale):
                break  # they took it and still return the old number: no point in resending
        if run["gets"] and all(g.value == num for g in run["gets"]):
            self.final_value = num

    def _post_until_covered(self, style: str, num: int) -> list[Exchange]:
        posts: list[Exchange] = []
        if self.header_mode():
            known = self.backends()
            target = max(2, len(known))
            limit = min(8, 4 * target)  # random balancing misses one of 2 in 8 sends: 1%
            while len(posts) < limit:
                posts.append(self.lb("POST", style, num))
                if not posts[-1].ok:
                    break  # refused: repeating will not change the answer
                acked = {p.served_by for p in posts}
                if len(posts) >= target and self.backends() <= acked:
                    break
        else:
            # Nothing names the instance: repeat; with 2 instances 4 sends reach both under
            # round robin (the ALB's default), and the GETs after confirm it.
            estimate = max(2, min(4, self.count_by_values()[0]))
            for _ in range(2 * estimate):
                posts.append(self.lb("POST", style, num))
                if not posts[-1].ok:
                    break
        return posts

    def probe_form_if_json_fails(self) -> None:
        runs = self.style_runs
        if runs and all(not any(p.ok for p in r["posts"]) for r in runs.values()):
            self.form_probe = self.lb("POST", "form", self.base + 300)

    # -- judging --------------------------------------------------------------------------
    def judge_status(self) -> None:
        check = self.checks[1]
        gets = [e for e in self.log if e.method == "GET"]
        if not gets:
            if check.status == SKIP and not check.reason:
                check.set(SKIP, "no GET was sent")
            return
        bad = [e for e in gets if e.error or e.status != 200]
        if not bad:
            check.set(PASS, f"{len(gets)} of {len(gets)} GETs returned 200")
            return
        first = bad[0]
        if first.error:
            finding = transport_finding(first.error, first.detail)
            check.set(FAIL, f"GET / got no usable answer: {finding.reason}", finding.fix,
                      finding.code)
            if first.interim:
                check.details.append(f"after {first.interim} interim (1xx) answer(s)")
            return
        finding = explain_status(first.status)
        counts = Counter(e.status for e in bad)
        summary = ", ".join(f"{n}x {s}" for s, n in sorted(counts.items(), key=str))
        share = f"{len(bad)} of {len(gets)} GETs failed ({summary})"
        if len(bad) < len(gets):
            share += "; the others returned 200, so one instance answers and another does not"
        check.set(FAIL, f"{finding.reason}. {share}", finding.fix, finding.code)

    def judge_body(self) -> None:
        check = self.checks[2]
        answered = [e for e in self.log if e.method == "GET" and e.status == 200
                    and not e.error]
        if not answered:
            if not check.reason:
                check.set(SKIP, "no GET / returned 200 (check 2)")
            return
        warnings: dict[str, Finding] = {}
        for e in answered:
            finding = classify_body(e.body, e.content_type, e.body_size if e.truncated else "")
            if finding and finding.code in WARNING_CODES:
                warnings.setdefault(finding.code, finding)
            elif finding:
                check.finding(FAIL, finding)
                return
        check.warnings = list(warnings.values())
        sample = answered[-1]
        check.set(PASS, f"{len(answered)} bodies like {show_body(sample.body)}, "
                  f"Content-Type {sample.content_type or '(none)'}")

    def judge_post(self) -> None:
        check = self.checks[3]
        if check.reason:
            return
        if not self.style_runs and self.cut_short:
            check.set(SKIP, f"not run: {self.cut_short}")
            return
        if not self.style_runs:
            check.set(SKIP, "not run: GET / never returned 200 (check 2)" if not self.stopped
                      else f"not run: the load balancer stopped answering ({self.stopped})")
            return
        unfinished = [s for s in ("json", "data") if s not in self.finished]
        if self.cut_short and unfinished:
            self.style_runs = {s: r for s, r in self.style_runs.items() if s in self.finished}
            if not self.style_runs:
                check.set(SKIP, f"not finished: {self.cut_short}")
                return
        ok_styles = {s for s, r in self.style_runs.items() if any(p.ok for p in r["posts"])}
        problems: list[tuple[str, Finding]] = []
        summaries: list[str] = []
        unverified: list[str] = []  # 2xx, but no GET body after it held a readable number
        for style, run in self.style_runs.items():
            num, posts, gets = run["num"], run["posts"], run["gets"]
            label = STYLE_LABEL[style]
            failed = [p for p in posts if not p.ok]
            if failed:
                p = failed[0]
                if p.error:
                    problems.append((style, Finding(
                        f"post-{p.error}", f"POST / with {label} got no answer ({p.detail})",
                        "the app must answer POST / quickly; read its log")))
                else:
                    problems.append((style, explain_post_failure(
                        p.status, style, other_style_ok=bool(ok_styles - {style}))))
                continue
            answered = [g for g in gets if g.value is not None]
            stale = [g for g in answered if g.value != num]
            acked = sorted({p.served_by for p in posts if p.served_by})
            who = (f"X-Served-By shows {len(acked)} instance(s) took it ({', '.join(acked)})"
                   if acked else "no X-Served-By header, so it was repeated")
            if not answered:
                unverified.append(style)
                continue
            if stale:
                values = Counter(g.value for g in stale)
                shown = ", ".join(f"{v} ({n}x)" for v, n in values.most_common(3))
                if self.header_mode():
                    deaf = sorted({g.served_by for g in stale if g.served_by in acked})
                    if deaf:
                        why = (f"instance(s) {', '.join(deaf)} answered 2xx and still return "
                               "the old number: the POST is not stored, or each worker process "
                               "keeps its own copy (several gunicorn workers)")
                    else:
                        why = "some instance never got the POST"
                else:
                    why = ("either the POST is not stored (or kept per worker process), or an "
                           "instance never got it")
                problems.append((style, Finding(
                    "post-not-applied",
                    f"POST {{'num': {num}}} with {label} answered 2xx x{len(posts)}, yet "
                    f"{len(stale)} of {len(answered)} GETs after it returned {shown}: {why}",
                    "store int(data['num']) in state shared by all workers (a file or one "
                    "worker), and make sure both instances run the same app")))
                continue
            summaries.append(f"{label}: sent {len(posts)}x, all 2xx; {who}; "
                             f"{len(answered)} GETs after it returned {num}")
        if problems and set(ok_styles) == set() and self.form_probe is not None:
            if self.form_probe.ok:
                check.finding(FAIL, FORM_READER)
                check.details = [f"{STYLE_LABEL[s]}: {f.reason}" for s, f in problems]
                return
        if problems:
            style, finding = problems[0]
            check.finding(FAIL, finding)
            check.details = [f"{STYLE_LABEL[s]}: {f.reason}" for s, f in problems[1:]]
            check.details += summaries
            return
        if self.cut_short and unfinished:
            check.set(SKIP, f"not finished ({', '.join(map(STYLE_LABEL.get, unfinished))} "
                      f"not tried to the end): {self.cut_short}")
            check.details = summaries
            return
        if unverified:
            check.set(SKIP, "POST / answered 2xx, but no GET after it returned a readable "
                      "number (checks 2 and 3), so the update cannot be confirmed")
            check.details = summaries
            return
        check.set(PASS, f"both ways graders send it took effect on every instance "
                  f"({sum(len(r['posts']) for r in self.style_runs.values())} POSTs)")
        check.details = summaries

    def judge_spread(self) -> None:
        check = self.checks[4]
        if check.reason:
            return
        answered = [e for e in self.log if e.ok]
        if not answered:
            check.set(SKIP, "not run: the load balancer never answered 2xx (check 2)")
            return
        by_header = Counter(e.served_by for e in answered if e.served_by)
        posted = {p.sent for p in self.spread_posts if p.ok}
        values = Counter(g.value for g in self.spread_gets if g.value is not None)
        by_values, one_off = self.count_by_values()
        unstable = one_off >= 2
        count = max(len(by_header), 0 if unstable or not posted else by_values)
        if self.cut_short and "spread" not in self.finished and count < 2:
            check.set(SKIP, f"not finished: {self.cut_short}")
            return
        evidence = []
        if by_header:
            evidence.append("X-Served-By: " + ", ".join(f"{k} ({n}x)" for k, n in
                                                           sorted(by_header.items())))
        if posted:
            evidence.append(f"after {len(self.spread_posts)} distinct POSTs, "
                            f"{len(self.spread_gets)} GETs returned {len(values)} distinct "
                            f"value(s)")
        if unstable:
            changing = (f"{one_off} of the values GET returned were never POSTed and "
                        "changed from one GET to the next: the value is not a stored seed, so "
                        "it counts no instance")
            if not by_header:
                check.set(FAIL, f"cannot count instances: {changing} ("
                          + "; ".join(evidence) + ")",
                          "GET / must return the number the last POST / stored on that "
                          "instance (one shared seed per instance, not a random or counter "
                          "value); add X-Served-By to tell instances apart", "values-unstable")
                return
            check.details.append(changing + "; counted by X-Served-By instead")
        if not by_header and not posted:
            check.set(SKIP, "cannot count instances: POST fails (check 4) and responses carry "
                      f"no {SERVED_BY} header")
            return
        if not by_header and not values:
            check.set(SKIP, "cannot count instances: no GET returned a readable number (check "
                      f"3) and responses carry no {SERVED_BY} header")
            return
        if count >= 2:
            check.set(PASS, f"{count} instances answer through the load balancer ("
                      + "; ".join(evidence) + ")")
            return
        check.set(FAIL, "only one instance is serving traffic (" + "; ".join(evidence) + ")",
                  "register both instances in the target group on port 5000 and get both "
                  "healthy: the app running on each (FAQ 4), bound to 0.0.0.0 (FAQ 1), their "
                  "security group allowing the load balancer on 5000 (FAQ 6)",
                  "single-instance")

    def count_by_values(self) -> tuple[int, int]:
        """(instances the spread GETs' values show, values that mark none).

        Each instance holds the last number it got: a POSTed value marks one instance, an
        old value seen twice one that missed every POST. Values never POSTed that change
        from GET to GET mark no instance at all: a random or counting server.
        """
        posted = {p.sent for p in self.spread_posts if p.ok}
        values = Counter(g.value for g in self.spread_gets if g.value is not None)
        held = [v for v in values if v in posted]
        stale = [v for v, n in values.items() if v not in posted and n >= 2]
        one_off = sum(1 for v, n in values.items() if v not in posted and n == 1)
        return len(held) + len(stale) + (1 if one_off == 1 else 0), one_off

    def check_instances(self) -> None:
        check = self.checks[5]
        if not self.instances:
            check.set(SKIP, "no instance addresses (give --instances ip1,ip2 to check each "
                      "instance on :5000)")
            return

        def probe(endpoint: Endpoint) -> Exchange:
            try:
                return self.client.send("GET", endpoint, str(endpoint))
            except BudgetExhausted:
                return Exchange("GET", str(endpoint), error="budget",
                                detail=f"the run's {self.client.budget} requests were used up")
            except DeadlineReached:
                return Exchange("GET", str(endpoint), error="run-deadline",
                                detail=f"the run deadline of {self.deadline.seconds:g} s "
                                "was reached before this instance was asked")

        with ThreadPoolExecutor(max_workers=min(8, len(self.instances))) as pool:
            results = list(pool.map(probe, self.instances))
        self.log += results
        lb_backends = self.backends()
        failures: list[tuple[Endpoint, Finding]] = []
        for endpoint, ex in zip(self.instances, results, strict=True):
            finding = self._judge_instance(endpoint, ex, lb_backends)
            if finding is None:
                check.details.append(f"{endpoint}: PASS, {show_body(ex.body)}"
                                     + (f" from {ex.served_by}" if ex.served_by else ""))
            else:
                check.details.append(f"{endpoint}: FAIL, {finding.reason}; fix: {finding.fix}")
                failures.append((endpoint, finding))
        if failures:
            endpoint, first = failures[0]
            more = f" (and {len(failures) - 1} more, below)" if len(failures) > 1 else ""
            check.set(FAIL, f"{endpoint}: {first.reason}{more}", first.fix, first.code)
        else:
            check.set(PASS, f"{len(self.instances)} instance(s) answer on their own and hold "
                      "what the load balancer returns")

    def _judge_instance(self, endpoint: Endpoint, ex: Exchange, lb_backends: set[str]
                        ) -> Finding | None:
        if ex.error == "connect-timeout":
            return Finding("instance-timeout", f"TCP connect to :{endpoint.port} timed out",
                           f"let the instances' security group allow TCP {endpoint.port} (seed "
                           "step 2), and check the instance is running")
        if ex.error == "refused":
            return Finding("instance-refused", "connection refused: nothing listens there",
                           "ssh in and start the app (FAQ 4), bound to 0.0.0.0, not 127.0.0.1 "
                           "(FAQ 1: flask run --host=0.0.0.0)")
        if ex.error:
            base = transport_finding(ex.error, ex.detail)
            return Finding(f"instance-{base.code}", base.reason, base.fix)
        if ex.status != 200:
            s = explain_status(ex.status)
            return Finding(f"instance-{s.code}", s.reason, s.fix)
        body = classify_body(ex.body, ex.content_type, ex.body_size if ex.truncated else "")
        if body and body.code not in WARNING_CODES:  # a warning is check 3's, once
            return Finding(f"instance-{body.code}", body.reason, body.fix)
        if self.final_value is not None and ex.value != self.final_value:
            return Finding(
                "instance-not-behind-lb",
                f"holds {ex.value}, but every GET through the load balancer returned "
                f"{self.final_value}, the number just POSTed to it: this instance is not one "
                "of the load balancer's targets",
                "register this instance in the target group (port 5000), or give the grader "
                "the instances that are",
            )
        if ex.served_by and lb_backends and ex.served_by not in lb_backends:
            return Finding(
                "instance-not-behind-lb",
                f"answers as '{ex.served_by}', which never answered through the load balancer "
                f"({', '.join(sorted(lb_backends))})",
                "register this instance in the target group (port 5000)",
            )
        return None


def _is_private(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_private and not addr.is_loopback


def grade(address: str | Address, instances: list[str | Endpoint] | None = None, *,
          timeout: float = DEFAULT_TIMEOUT, deadline: float = DEFAULT_DEADLINE,
          max_requests: int = MAX_REQUESTS, rng: random.Random | None = None,
          cancel: threading.Event | None = None, limits: Limits = LIMITS,
          public_only: bool = False) -> Report:
    """Grade the load balancer at `address` (and each instance, when given) over HTTP.

    Ends within `deadline` seconds (plus one `timeout` at most for a name lookup that hangs)
    after at most `max_requests` requests. `cancel`, when set, stops it with Cancelled.
    `public_only`: an address that is not public (public.py) gets no byte (a class, Gradescope).
    """
    addr = address if isinstance(address, Address) else parse_address(address)
    endpoints: list[Endpoint] = []
    for item in instances or []:
        for e in ([item] if isinstance(item, Endpoint) else parse_instances(item)):
            if e not in endpoints:
                endpoints.append(e)
    started = time.monotonic()
    grading = _Grading(addr, endpoints, timeout, max_requests,
                       rng or random.Random(), deadline, cancel, limits,  # noqa: S311 - test values
                       public_only)
    grading.run()
    statuses = [e.status for e in grading.log if e.target == "lb" and e.status
                and e.status != 200 and e.method == "GET"]
    return Report(addr, endpoints, grading.checks, grading.client.count,
                  time.monotonic() - started, lb_statuses=statuses,
                  cut_short=grading.cut_short, timeout=timeout, deadline=deadline)
