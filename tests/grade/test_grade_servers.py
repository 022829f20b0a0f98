"""The grader against real servers on loopback: a correct two-instance setup behind Caddy
passes; each FAQ pitfall fails, in the right check, under its own name."""

from __future__ import annotations

import random
import time

import grade_servers as apps
import pytest

from infra.grade.grader import MAX_REQUESTS, grade

pytestmark = pytest.mark.integration
TIMEOUT = 0.5  # for the cases that wait out a timeout
HEALTHY_TIMEOUT = 3.0  # costs nothing when servers answer; the 2-core box is often loaded


def run(lb, instances=None, timeout=HEALTHY_TIMEOUT, **kw):
    return grade(str(lb), [str(i) for i in instances or []], timeout=timeout,
                 rng=random.Random(7), **kw)


def failed(report):
    return {c.number: c.code for c in report.checks if c.status == "FAIL"}


def test_correct_two_instances_behind_caddy_pass(lb_of):
    lb, backends = lb_of(apps.correct)
    started = time.monotonic()
    report = run(lb, backends)
    took = time.monotonic() - started
    assert report.passed, report.render()
    assert [c.status for c in report.checks] == ["PASS"] * 6
    assert report.render().splitlines()[-1] == "PASS"
    assert report.requests <= MAX_REQUESTS
    assert f"{report.requests} requests" in report.render()
    assert took < 15  # ~0.1 s idle; loose for make test's load, far below the 30 s deadline
    assert "i-0" in report.check(5).reason and "i-1" in report.check(5).reason
    # check 4 says each instance took each update
    assert any("i-0, i-1" in d for d in report.check(4).details)
    data = report.to_dict()
    assert data["passed"] is True and len(data["checks"]) == 6


def test_correct_without_served_by_header_counts_instances_by_value(lb_of):
    lb, backends = lb_of(apps.correct, named=False)
    report = run(lb, backends)
    assert report.passed, report.render()
    assert "2 distinct value" in report.check(5).reason
    assert "repeated" in " ".join(report.check(4).details)


@pytest.mark.parametrize(
    ("factory", "code"),
    [
        (apps.jsonify_app, "json-quoted"),
        (apps.json_dumps_app, "json-quoted"),
        (apps.bytes_literal_app, "bytes-literal"),
        (apps.trailing_newline_app, "whitespace"),
        (apps.html_page_app, "html-page"),
    ],
)
def test_body_pitfalls_fail_check_3_only(lb_of, factory, code):
    lb, _ = lb_of(factory)
    report = run(lb)
    assert not report.passed
    assert failed(report) == {3: code}, report.render()
    assert report.render().splitlines()[-1].startswith("FAIL")


def test_a_bare_number_labelled_json_passes_with_a_warning(lb_of):
    # FastAPI's `return seed`: the course's grader compares the text, and passes it
    lb, backends = lb_of(apps.json_content_type_app)
    report = run(lb, backends)
    assert report.passed, report.render()
    assert [w.code for w in report.check(3).warnings] == ["json-content-type"]
    assert report.check(6).status == "PASS" and not report.check(6).warnings  # said once
    text = report.render()
    assert "warning [json-content-type]" in text and "FastAPI" in text
    assert text.splitlines()[-1] == "PASS"
    assert report.to_dict()["checks"][2]["warnings"][0]["code"] == "json-content-type"


def test_bytes_literal_shows_the_faq_body(lb_of):
    lb, _ = lb_of(apps.bytes_literal_app)
    reason = run(lb).check(3).reason
    assert "b'\"" in reason and "FAQ 6" in reason


@pytest.mark.parametrize(
    ("factory", "code"),
    [
        (apps.form_reader_app, "post-reads-form"),
        (apps.strict_json_app, "post-needs-json-content-type"),
        (apps.ignores_post_app, "post-not-applied"),
    ],
)
def test_post_pitfalls_fail_check_4(lb_of, factory, code):
    lb, _ = lb_of(factory)
    report = run(lb)
    assert failed(report).get(4) == code, report.render()
    assert 3 not in failed(report)


def test_single_backend_is_only_one_instance_serving(lb_of):
    lb, _ = lb_of(apps.correct, n=1)
    report = run(lb)
    assert failed(report) == {5: "single-instance"}, report.render()
    assert "only one instance is serving traffic" in report.check(5).reason


def test_single_backend_without_header(lb_of):
    lb, _ = lb_of(apps.correct, n=1, named=False)
    report = run(lb)
    assert failed(report) == {5: "single-instance"}, report.render()


def test_caddy_with_dead_targets_answers_502(caddy, closed_port):
    lb = caddy([closed_port])
    report = run(lb)
    assert failed(report) == {2: "http-502"}, report.render()
    assert "FAQ 6" in report.check(2).reason and "0.0.0.0" in report.check(2).fix
    assert [c.status for c in report.checks[2:5]] == ["SKIP"] * 3
    assert report.lb_statuses and set(report.lb_statuses) == {502}


def test_one_live_one_dead_target(caddy, serve, closed_port):
    lb = caddy([serve(apps.correct("i-0")), closed_port])
    report = run(lb)
    assert failed(report).get(2) == "http-502", report.render()
    assert "the others returned 200" in report.check(2).reason


def test_503_no_healthy_targets(serve):
    lb = serve(apps.status_app(503, "<html><body><h1>503 Service Temporarily Unavailable"
                                    "</h1></body></html>"))
    report = run(lb)
    assert failed(report) == {2: "http-503"}, report.render()
    assert "OutOfService" in report.check(2).reason


def test_501_points_at_faq_3(serve):
    report = run(serve(apps.status_app(501)))
    assert failed(report) == {2: "http-501"}
    assert "FAQ 3" in report.check(2).reason


def test_never_answers_is_a_read_timeout_and_stays_bounded(silent_server):
    started = time.monotonic()
    report = run(silent_server, timeout=TIMEOUT)
    took = time.monotonic() - started
    assert failed(report) == {2: "read-timeout"}, report.render()
    assert report.check(1).status == "PASS"
    assert report.requests == 1  # a dead address gets no more requests
    assert took < 4 * TIMEOUT


def test_closed_port_is_refused_no_listener(closed_port):
    report = run(closed_port)
    assert failed(report) == {1: "refused"}
    assert "listener" in report.check(1).fix
    assert report.requests == 0


def test_dropped_syns_are_a_connect_timeout_security_group(blackhole):
    started = time.monotonic()
    report = run(blackhole, timeout=TIMEOUT)
    assert failed(report) == {1: "connect-timeout"}, report.render()
    assert "security group" in report.check(1).reason
    assert "FAQ 5" in report.check(1).fix
    assert time.monotonic() - started < 4 * TIMEOUT


def test_instances_are_checked_directly(lb_of, serve, closed_port):
    lb, backends = lb_of(apps.correct)
    stranger = serve(apps.correct("i-9"))
    report = run(lb, [*backends, stranger, closed_port])
    assert failed(report) == {6: "instance-not-behind-lb"}, report.render()
    details = "\n".join(report.check(6).details)
    assert f"{backends[0]}: PASS" in details and f"{backends[1]}: PASS" in details
    assert f"{stranger}: FAIL" in details and "not one of the load balancer" in details
    assert f"{closed_port}: FAIL" in details and "FAQ 1" in details


def test_instance_with_a_body_pitfall(lb_of, serve):
    lb, backends = lb_of(apps.correct)
    report = run(lb, [backends[0], serve(apps.jsonify_app("i-5"))])
    assert failed(report) == {6: "instance-json-quoted"}, report.render()


def test_request_budget_is_a_hard_cap_and_keeps_the_instances_share(lb_of):
    lb, backends = lb_of(apps.correct)
    report = run(lb, backends, max_requests=12)
    assert report.requests == 12
    assert not report.passed
    check4 = report.check(4)
    assert check4.status == "SKIP"  # not finished: no verdict on what it could not try
    assert "cap of 12 requests" in " ".join([check4.reason, *check4.details])
    assert "stopped early: the cap of 12 requests" in report.render()
    assert len(report.check(6).details) == 2  # both instances were still asked


def test_sticky_cookie_does_not_pin_the_grader(serve, caddy):
    # Caddy's cookie policy stands in for ALB stickiness: whoever sends the cookie back
    # stays on one instance. The grader, like requests.get(), keeps no cookies.
    backends = [serve(apps.correct(f"i-{k}")) for k in range(2)]
    lb = caddy(backends, {"policy": "cookie", "fallback": {"policy": "round_robin"}})
    report = run(lb, backends)
    assert report.passed, report.render()


def test_random_balancing_with_served_by_passes(lb_of, serve, caddy):
    # Caddy's default policy is random: covering both instances needs the header's feedback
    backends = [serve(apps.correct(f"i-{k}")) for k in range(2)]
    for _ in range(3):
        report = run(caddy(backends, "random"), backends)
        assert report.passed, report.render()


@pytest.mark.parametrize("named", [True, False])
def test_one_instance_ignoring_posts_is_named(serve, caddy, named):
    good = serve(apps.correct("i-good" if named else None))
    deaf = serve(apps.ignores_post_app("i-deaf" if named else None))
    report = run(caddy([good, deaf]))
    assert failed(report) == {4: "post-not-applied"}, report.render()
    assert report.check(5).status == "PASS"  # both answer, with different numbers
    if named:
        assert "i-deaf answered 2xx and still return" in report.check(4).reason
        assert "i-good" not in report.check(4).reason.split("return")[0]
    else:
        assert "or an instance never got it" in report.check(4).reason
    assert report.requests <= 60


# -- the six checks read together -----------------------------------------------------------

def test_lb_times_out_but_the_instances_answer_names_the_security_groups(caddy, blackhole,
                                                                         serve):
    # The instances' security group lets the grader in on :5000 but not the load balancer
    # (FAQ 6): Caddy's upstream is a black hole (dropped SYNs), the same apps answer directly.
    instances = [serve(apps.correct(f"i-{k}")) for k in range(2)]
    lb = caddy([blackhole])
    report = run(lb, instances, timeout=TIMEOUT)
    assert failed(report) == {2: "instance-sg-blocks-lb"}, report.render()
    assert report.check(6).status == "PASS"
    check = report.check(2)
    assert "security group" in check.reason and "FAQ 6" in check.reason
    assert "check 6" in check.reason and "restart" not in check.fix
    assert "allow TCP" in check.fix


def test_lb_times_out_and_so_do_the_instances_names_their_security_group(silent_server,
                                                                         blackhole):
    report = run(silent_server, [blackhole], timeout=TIMEOUT)
    assert failed(report) == {2: "instance-sg-blocks-lb", 6: "instance-timeout"}, \
        report.render()
    assert "security group" in report.check(2).reason and "restart" not in report.check(2).fix


def test_lb_times_out_and_the_instances_refuse_is_still_the_app(silent_server, closed_port):
    report = run(silent_server, [closed_port], timeout=TIMEOUT)
    assert failed(report) == {2: "read-timeout", 6: "instance-refused"}, report.render()


def test_lb_times_out_without_instances_says_how_to_tell(silent_server):
    report = run(silent_server, timeout=TIMEOUT)
    assert failed(report) == {2: "read-timeout"}
    assert any("--instances" in d and "FAQ 6" in d for d in report.check(2).details)
