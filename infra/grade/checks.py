"""The six checks, each judging its own part of a grade's transcript (plan.py).

    connect     the name resolves and TCP to the port opens
    get_200     every GET / of the run returned 200
    body        each body is exactly ^-?\\d+$, not JSON, not a bytes literal, no newline
    post        {"num": N} sent as json= and as data=json.dumps(...) reaches every instance
    spread      at least two instances answer through the load balancer
    instances   each instance answers directly on :5000 and holds what the LB returns

`judge(transcript)` returns them in the report's order; `read_together` then reads the
load balancer's check with the instances' one, as one diagnosis.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from infra.config import APP_PORT
from infra.grade.address import Endpoint
from infra.grade.display import shown
from infra.grade.http_answer import SERVED_BY, Exchange
from infra.grade.http_probe import Style
from infra.grade.pitfalls import (
    FORM_READER,
    WARNING_CODES,
    Pitfall,
    classify_answer,
    explain_post_failure,
    explain_status,
    show_body,
    transport_finding,
    value_of,
)
from infra.grade.plan import STYLES, StyleRun, Transcript
from infra.grade.report import (
    BODY,
    CHECK_NAMES,
    CHECK_NUMBERS,
    CONNECT,
    FAIL,
    GET_200,
    INSTANCES,
    PASS,
    POST,
    SKIP,
    SPREAD,
    Check,
)
from infra.grade.transport import TransportError

# What the get_200 check says when the load balancer got no answer from its targets in time.
_TARGETS_UNREACHED = {TransportError.READ_TIMEOUT, TransportError.SLOW_RESPONSE,
                      "http-502", "http-504"}
_SG_BLOCKS_LB = "instance-sg-blocks-lb"
STYLE_LABEL = {
    Style.JSON: "json={'num': N}",
    Style.DATA: "data=json.dumps({'num': N}) (no Content-Type)",
    Style.FORM: "form-encoded num=N",
}
# Why the load balancer's checks did not run, by what the connect check met.
_NOT_RUN = {
    TransportError.DNS: "the name does not resolve",
    TransportError.DNS_TIMEOUT: "the name does not resolve",
    TransportError.NOT_PUBLIC: "the address is not public",
    TransportError.LOOPBACK_ONLY: "not a loopback address",
    TransportError.CONNECT_TIMEOUT: "TCP connect timed out",
    TransportError.REFUSED: "the connection was refused",
}


def new_check(key: str, t: Transcript) -> Check:
    name = CHECK_NAMES[key].format(port=t.address.port)
    return Check(CHECK_NUMBERS[key], name)


def judge(t: Transcript) -> list[Check]:
    """The six checks of one grade, in the report's order."""
    connect = judge_connect(t)
    lb_checks = (GET_200, BODY, POST, SPREAD)
    if connect.status == FAIL:
        why = _NOT_RUN.get(t.connection.error.code, "no connection")
        lb = [new_check(key, t).set(SKIP, f"not run: {why} (check 1)") for key in lb_checks]
    else:
        lb = [judge_status(t), judge_body(t), judge_post(t), judge_spread(t)]
    instances = judge_instances(t)
    read_together(lb[0], instances, t)
    return [connect, *lb, instances]


# -- connect ----------------------------------------------------------------------------------
def judge_connect(t: Transcript) -> Check:
    check = new_check(CONNECT, t)
    c, host, port = t.connection, t.address.host, t.address.port
    if c.error is None:
        return check.set(PASS, f"{shown(host, 80)} resolves to {', '.join(c.ips)}; TCP {port} "
                         f"opened in {c.took * 1000:.0f} ms")
    exc = c.error
    finding = transport_finding(exc.code, "")
    if not c.ips:  # the lookup refused it or failed: no byte was sent
        if exc.code in (TransportError.DNS, TransportError.DNS_TIMEOUT):
            return check.set(FAIL, exc.detail, "copy the DNS name from the load balancer's "
                             "description; a new load balancer's name takes a minute or two "
                             "to resolve", exc.code)
        if exc.code == TransportError.NOT_PUBLIC:
            return check.set(FAIL, f"address is not public: {exc.detail}; {finding.reason}",
                             finding.fix, exc.code)
        return check.set(FAIL, exc.detail, finding.fix, exc.code)
    ip = c.sockaddr[0]
    if exc.code == TransportError.CONNECT_TIMEOUT:
        why = ("the load balancer's security group does not allow TCP "
               f"{port} from anywhere (0.0.0.0/0), or the load balancer is internal")
        private = [a for a in c.ips if _is_private(a)]
        if private and len(private) == len(c.ips):
            why += f" (it resolves to private addresses {', '.join(private)}: internal)"
        return check.set(FAIL, f"TCP connect to {ip}:{port} timed out after {c.seconds:g} s: "
                         f"{why}", f"give the load balancer its own security group allowing "
                         f"HTTP {port} from 0.0.0.0/0 (not the default group), scheme "
                         "internet-facing; and run the grader from your own machine, not "
                         "from one of the instances (FAQ 5)", exc.code)
    if exc.code == TransportError.REFUSED:
        return check.set(FAIL, f"{ip}:{port} refused the connection: nothing listens on "
                         f"port {port}", f"add an HTTP listener on port {port} to the load "
                         "balancer, forwarding to the target group", exc.code)
    return check.set(FAIL, f"cannot connect to {ip}:{port}: {exc.detail}", finding.fix, exc.code)


def _is_private(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_private and not addr.is_loopback


# -- get_200 and body -------------------------------------------------------------------------
def judge_status(t: Transcript) -> Check:
    check = new_check(GET_200, t)
    gets = t.gets()
    if not gets:
        return check.set(SKIP, "no GET was sent")
    bad = [e for e in gets if e.error or e.status != 200]
    if not bad:
        return check.set(PASS, f"{len(gets)} of {len(gets)} GETs returned 200")
    first = bad[0]
    if first.error:
        finding = transport_finding(first.error, first.detail)
        check.set(FAIL, f"GET / got no usable answer: {finding.reason}", finding.fix,
                  finding.code)
        if first.interim:
            check.details.append(f"after {first.interim} interim (1xx) answer(s)")
        return check
    finding = explain_status(first.status)
    counts = Counter(e.status for e in bad)
    summary = ", ".join(f"{n}x {s}" for s, n in sorted(counts.items(), key=str))
    share = f"{len(bad)} of {len(gets)} GETs failed ({summary})"
    if len(bad) < len(gets):
        share += "; the others returned 200, so one instance answers and another does not"
    return check.set(FAIL, f"{finding.reason}. {share}", finding.fix, finding.code)


def judge_body(t: Transcript) -> Check:
    check = new_check(BODY, t)
    answered = [e for e in t.gets() if e.status == 200 and not e.error]
    if not answered:
        return check.set(SKIP, "no GET / returned 200 (check 2)")
    warnings: dict[str, Pitfall] = {}
    for e in answered:
        finding = classify_answer(e)
        if finding and finding.code in WARNING_CODES:
            warnings.setdefault(finding.code, finding)
        elif finding:
            return check.finding(FAIL, finding)
    check.warnings = list(warnings.values())
    sample = answered[-1]
    return check.set(PASS, f"{len(answered)} bodies like {show_body(sample.body)}, "
                     f"Content-Type {sample.content_type or '(none)'}")


# -- post -------------------------------------------------------------------------------------
@dataclass
class _StyleVerdict:
    """What one style's POSTs and the GETs after them show: a problem, or a summary."""

    problem: Pitfall | None = None
    summary: str = ""
    unverified: bool = False  # 2xx, but no GET body after it held a readable number


def judge_post(t: Transcript) -> Check:
    check = _judge_post(t)
    if t.cut_short and t.cut_short not in check.reason:
        check.details.append(f"stopped early: {t.cut_short}")
    return check


def _judge_post(t: Transcript) -> Check:
    check = new_check(POST, t)
    if not t.styles:
        if t.cut_short:
            return check.set(SKIP, f"not run: {t.cut_short}")
        return check.set(SKIP, "not run: GET / never returned 200 (check 2)" if not t.stopped
                         else f"not run: the load balancer stopped answering ({t.stopped})")
    unfinished = [s for s in STYLES if s not in t.styles or not t.styles[s].finished]
    runs = t.styles
    if t.cut_short and unfinished:
        runs = {s: r for s, r in runs.items() if r.finished}
        if not runs:
            return check.set(SKIP, f"not finished: {t.cut_short}")
    ok_styles = {s for s, r in runs.items() if any(p.ok for p in r.posts)}
    verdicts = {s: _judge_style(s, r, bool(ok_styles - {s}), t.header_mode())
                for s, r in runs.items()}
    problems = [(s, v.problem) for s, v in verdicts.items() if v.problem]
    summaries = [v.summary for v in verdicts.values() if v.summary]
    if problems and not ok_styles and t.form_probe is not None and t.form_probe.ok:
        check.finding(FAIL, FORM_READER)
        check.details = [f"{STYLE_LABEL[s]}: {f.reason}" for s, f in problems]
        return check
    if problems:
        check.finding(FAIL, problems[0][1])
        check.details = [f"{STYLE_LABEL[s]}: {f.reason}" for s, f in problems[1:]] + summaries
        return check
    check.details = summaries
    if t.cut_short and unfinished:
        return check.set(SKIP, f"not finished ({', '.join(map(STYLE_LABEL.get, unfinished))} "
                         f"not tried to the end): {t.cut_short}")
    if any(v.unverified for v in verdicts.values()):
        return check.set(SKIP, "POST / answered 2xx, but no GET after it returned a readable "
                         "number (checks 2 and 3), so the update cannot be confirmed")
    return check.set(PASS, f"both ways graders send it took effect on every instance "
                     f"({sum(len(r.posts) for r in runs.values())} POSTs)")


def _judge_style(style: Style, run: StyleRun, other_style_ok: bool,
                 header_mode: bool) -> _StyleVerdict:
    label = STYLE_LABEL[style]
    failed = [p for p in run.posts if not p.ok]
    if failed:
        p = failed[0]
        if p.error:
            return _StyleVerdict(Pitfall(
                f"post-{p.error}", f"POST / with {label} got no answer ({p.detail})",
                "the app must answer POST / quickly; read its log"))
        return _StyleVerdict(explain_post_failure(p.status, style, other_style_ok))
    answered = [g for g in run.gets if value_of(g) is not None]
    if not answered:
        return _StyleVerdict(unverified=True)
    stale = [g for g in answered if value_of(g) != run.num]
    acked = sorted({p.served_by for p in run.posts if p.served_by})
    if stale:
        return _StyleVerdict(_not_applied(run, label, len(answered), stale, acked, header_mode))
    who = (f"X-Served-By shows {len(acked)} instance(s) took it ({', '.join(acked)})"
           if acked else "no X-Served-By header, so it was repeated")
    return _StyleVerdict(summary=f"{label}: sent {len(run.posts)}x, all 2xx; {who}; "
                         f"{len(answered)} GETs after it returned {run.num}")


def _not_applied(run: StyleRun, label: str, answered: int, stale: list[Exchange],
                 acked: list[str], header_mode: bool) -> Pitfall:
    values = Counter(value_of(g) for g in stale)
    seen = ", ".join(f"{v} ({n}x)" for v, n in values.most_common(3))
    if not header_mode:
        why = ("either the POST is not stored (or kept per worker process), or an instance "
               "never got it")
    elif deaf := sorted({g.served_by for g in stale if g.served_by in acked}):
        why = (f"instance(s) {', '.join(deaf)} answered 2xx and still return the old number: "
               "the POST is not stored, or each worker process keeps its own copy (several "
               "gunicorn workers)")
    else:
        why = "some instance never got the POST"
    return Pitfall(
        "post-not-applied",
        f"POST {{'num': {run.num}}} with {label} answered 2xx x{len(run.posts)}, yet "
        f"{len(stale)} of {answered} GETs after it returned {seen}: {why}",
        "store int(data['num']) in state shared by all workers (a file or one worker), and "
        "make sure both instances run the same app")


# -- spread -----------------------------------------------------------------------------------
def judge_spread(t: Transcript) -> Check:
    check = new_check(SPREAD, t)
    answered = [e for e in t.log if e.ok]
    if not answered:
        return check.set(SKIP, "not run: the load balancer never answered 2xx (check 2)")
    by_header = Counter(e.served_by for e in answered if e.served_by)
    posted = {p.sent for p in t.spread_posts if p.ok}
    values = Counter(value_of(g) for g in t.spread_gets if value_of(g) is not None)
    by_values, one_off = t.count_by_values()
    unstable = one_off >= 2
    count = max(len(by_header), 0 if unstable or not posted else by_values)
    if t.cut_short and not t.spread_finished and count < 2:
        return check.set(SKIP, f"not finished: {t.cut_short}")
    evidence = []
    if by_header:
        evidence.append("X-Served-By: " + ", ".join(f"{k} ({n}x)" for k, n in
                                                   sorted(by_header.items())))
    if posted:
        evidence.append(f"after {len(t.spread_posts)} distinct POSTs, {len(t.spread_gets)} "
                        f"GETs returned {len(values)} distinct value(s)")
    shown_evidence = "; ".join(evidence)
    if unstable:
        changing = (f"{one_off} of the values GET returned were never POSTed and changed from "
                    "one GET to the next: the value is not a stored seed, so it counts no "
                    "instance")
        if not by_header:
            return check.set(FAIL, f"cannot count instances: {changing} ({shown_evidence})",
                             "GET / must return the number the last POST / stored on that "
                             "instance (one shared seed per instance, not a random or counter "
                             "value); add X-Served-By to tell instances apart",
                             "values-unstable")
        check.details.append(changing + "; counted by X-Served-By instead")
    if not by_header and not posted:
        return check.set(SKIP, "cannot count instances: POST fails (check 4) and responses "
                         f"carry no {SERVED_BY} header")
    if not by_header and not values:
        return check.set(SKIP, "cannot count instances: no GET returned a readable number "
                         f"(check 3) and responses carry no {SERVED_BY} header")
    if count >= 2:
        return check.set(PASS, f"{count} instances answer through the load balancer "
                         f"({shown_evidence})")
    return check.set(FAIL, f"only one instance is serving traffic ({shown_evidence})",
                     "register both instances in the target group on port 5000 and get both "
                     "healthy: the app running on each (FAQ 4), bound to 0.0.0.0 (FAQ 1), "
                     "their security group allowing the load balancer on 5000 (FAQ 6)",
                     "single-instance")


# -- instances --------------------------------------------------------------------------------
def judge_instances(t: Transcript) -> Check:
    check = new_check(INSTANCES, t)
    if not t.instances:
        return check.set(SKIP, "no instance addresses (give --instances ip1,ip2 to check each "
                         "instance on :5000)")
    lb_backends = t.backends()
    failures: list[tuple[Endpoint, Pitfall]] = []
    for endpoint, ex in zip(t.instances, t.instance_answers, strict=True):
        finding = _judge_instance(endpoint, ex, lb_backends, t.final_value)
        if finding is None:
            check.details.append(f"{endpoint}: PASS, {show_body(ex.body)}"
                                 + (f" from {ex.served_by}" if ex.served_by else ""))
        else:
            check.details.append(f"{endpoint}: FAIL, {finding.reason}; fix: {finding.fix}")
            failures.append((endpoint, finding))
    if failures:
        endpoint, first = failures[0]
        more = f" (and {len(failures) - 1} more, below)" if len(failures) > 1 else ""
        return check.set(FAIL, f"{endpoint}: {first.reason}{more}", first.fix, first.code)
    return check.set(PASS, f"{len(t.instances)} instance(s) answer on their own and hold what "
                     "the load balancer returns")


def _judge_instance(endpoint: Endpoint, ex: Exchange, lb_backends: set[str],
                    final_value: int | None) -> Pitfall | None:
    if ex.error == TransportError.CONNECT_TIMEOUT:
        return Pitfall("instance-timeout", f"TCP connect to :{endpoint.port} timed out",
                       f"let the instances' security group allow TCP {endpoint.port} (seed "
                       "step 2), and check the instance is running")
    if ex.error == TransportError.REFUSED:
        return Pitfall("instance-refused", "connection refused: nothing listens there",
                       "ssh in and start the app (FAQ 4), bound to 0.0.0.0, not 127.0.0.1 "
                       "(FAQ 1: flask run --host=0.0.0.0)")
    if ex.error:
        base = transport_finding(ex.error, ex.detail)
        return Pitfall(f"instance-{base.code}", base.reason, base.fix)
    if ex.status != 200:
        s = explain_status(ex.status)
        return Pitfall(f"instance-{s.code}", s.reason, s.fix)
    body = classify_answer(ex)
    if body and body.code not in WARNING_CODES:  # a warning is check 3's, once
        return Pitfall(f"instance-{body.code}", body.reason, body.fix)
    if final_value is not None and value_of(ex) != final_value:
        return Pitfall(
            "instance-not-behind-lb",
            f"holds {value_of(ex)}, but every GET through the load balancer returned "
            f"{final_value}, the number just POSTed to it: this instance is not one of the "
            "load balancer's targets",
            "register this instance in the target group (port 5000), or give the grader the "
            "instances that are",
        )
    if ex.served_by and lb_backends and ex.served_by not in lb_backends:
        return Pitfall(
            "instance-not-behind-lb",
            f"answers as '{ex.served_by}', which never answered through the load balancer "
            f"({', '.join(sorted(lb_backends))})",
            "register this instance in the target group (port 5000)",
        )
    return None


# -- the checks read together -----------------------------------------------------------------
def read_together(lb: Check, direct: Check, t: Transcript) -> None:
    """A load balancer that gets no answer from its targets (get_200) looks like a hung app
    on its own; the instances check tells which it is: the instances answering the grader
    directly means the app runs and is bound to 0.0.0.0, so the path from the load balancer
    to them is shut (the security groups, FAQ 6)."""
    if lb.status != FAIL or lb.code not in _TARGETS_UNREACHED:
        return
    port = t.instances[0].port if t.instances else APP_PORT
    first = next(e for e in t.gets() if e.error or e.status != 200)
    seen = f"GET / through the load balancer: {first.detail or first.error}" \
        if first.error else f"GET / through the load balancer returned {first.status}"
    allow = (f"in the instances' security group, allow TCP {port} from the load balancer's "
             "security group (seed step 2)")
    if direct.status == PASS:
        lb.set(FAIL, f"{seen}; yet every instance answers GET / directly on :{port} (check 6): "
               "the app runs, and the load balancer cannot reach it. The instances' security "
               f"group does not allow TCP {port} from the load balancer's security group "
               "(FAQ 6, 'no traffic goes to the EC2 instances')",
               f"{allow}, and check that the target group forwards to port {port}; the app "
               "itself is fine", _SG_BLOCKS_LB)
    elif direct.status == FAIL and direct.code == "instance-timeout":
        lb.set(FAIL, f"{seen}; and TCP {port} to the instances times out from here too "
               "(check 6): their security group lets nobody in on the app's port (FAQ 6)",
               f"{allow}; then grade again", _SG_BLOCKS_LB)
    elif direct.status == SKIP and lb.code == TransportError.READ_TIMEOUT:
        lb.details.append("give the instances' public IPs (--instances ip1,ip2): if they "
                          "answer directly, the cause is the security groups (FAQ 6), not "
                          "the app")
