"""Finding the load balancer (name, DNS name, ARN, tags), target_health_lines, the probe."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from doctor_seed import aws_health, inject_target_health

from infra.aws.lb_lookup import find, normalize_dns
from infra.config import PROJECT, TAG_PROJECT, TAG_STACK
from infra.doctor import examination, instance_checks
from infra.doctor.diagnosis import diagnose, target_health_lines
from infra.doctor.findings import ERROR
from infra.doctor.health_probe import probe_health_check
from infra.errors import UserError


def tag_stack(seed, stack: str, *arns: str) -> None:
    for arn in arns or (seed.lb_arn, seed.tg_arn):
        seed.elbv2.add_tags(ResourceArns=[arn], Tags=[
            {"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_STACK, "Value": stack}])


@pytest.mark.parametrize("value", [
    "{name}", "{dns}", "http://{dns}", "http://{dns}/", "{dns}:80", "{DNS}", "{arn}",
])
def test_found_by_name_dns_or_arn(clients, seed, value):
    given = value.format(name=seed.lb_name, dns=seed.lb_dns, DNS=seed.lb_dns.upper(),
                         arn=seed.lb_arn)
    lb, how = find(clients, lb=given)
    assert lb["LoadBalancerArn"] == seed.lb_arn
    assert how.startswith("by ")


def test_normalize_dns():
    assert normalize_dns(" HTTP://A-1.us-east-1.elb.amazonaws.com.:80/x ") == \
        "a-1.us-east-1.elb.amazonaws.com"


def test_found_by_tags_and_lb_wins_over_stack(clients, seed):
    stack = f"tagged{seed.suffix}"
    tag_stack(seed, stack)
    lb, how = find(clients, stack=stack)
    assert lb["LoadBalancerArn"] == seed.lb_arn and f"{TAG_STACK}={stack}" in how
    findings = diagnose(clients, stack=stack)
    assert not [f for f in findings if f.severity != "info"]
    lb, _ = find(clients, stack="no-such-stack", lb=seed.lb_name)
    assert lb["LoadBalancerArn"] == seed.lb_arn


def test_with_stack_the_tagged_group_is_the_intended_one(clients, seed):
    """Listener moved to another group that holds targets: only the tags tell it is wrong."""
    stack = f"meant{seed.suffix}"
    tag_stack(seed, stack)
    other = seed.new_target_group("elsewhere")
    seed.elbv2.register_targets(TargetGroupArn=other,
                                Targets=[{"Id": seed.instance_ids[0], "Port": 5000}])
    seed.forward_to(other)
    assert "LISTENER_WRONG_TARGET_GROUP" in {f.code for f in diagnose(clients, stack=stack)}


def test_not_found_by_name_says_what_was_searched_and_what_to_try(clients, seed):
    with pytest.raises(UserError) as err:
        find(clients, lb="nope-alb")
    text = str(err.value)
    assert "'nope-alb'" in text and "DNS name" in text and "--region" in text
    assert "Load balancers here: student-alb" in text  # lists what does exist


def test_not_found_by_dns_hints_at_the_region(clients, seed):
    with pytest.raises(UserError) as err:
        find(clients, lb="my-alb-123.eu-west-1.elb.amazonaws.com")
    assert "my-alb-123.eu-west-1.elb.amazonaws.com" in str(err.value)
    assert "--region eu-west-1" in str(err.value)


def test_not_found_by_tags_points_to_lb_option(clients, seed):
    with pytest.raises(UserError) as err:
        find(clients, stack="ghost")
    text = str(err.value)
    assert f"{TAG_STACK}=ghost" in text and "make doctor LB=" in text


def test_two_tagged_load_balancers_ask_to_choose(clients, seed):
    stack = f"twice{seed.suffix}"
    tag_stack(seed, stack, seed.lb_arn)
    lb2 = seed.elbv2.create_load_balancer(Name=seed.named("second"), Subnets=seed.subnet_ids,
                                          SecurityGroups=[seed.lb_sg])["LoadBalancers"][0]
    tag_stack(seed, stack, lb2["LoadBalancerArn"])
    with pytest.raises(UserError, match="pick one with --lb"):
        find(clients, stack=stack)


def test_classic_load_balancer_is_named_as_the_wrong_kind(clients, seed):
    elb = clients.client("elb")
    elb.create_load_balancer(LoadBalancerName="classic-one", Subnets=[seed.subnet_ids[0]],
                             Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80,
                                         "InstancePort": 5000}])
    with pytest.raises(UserError, match="Classic Load Balancer.*FAQ 6"):
        find(clients, lb="classic-one")


# -- target_health_lines: what the grader shows next to a 502/503 --------------------------


def test_target_health_lines_healthy(clients, seed):
    lines = target_health_lines(clients, f"http://{seed.lb_dns}/")
    assert len(lines) == 2
    for iid in seed.instance_ids:
        [line] = [line for line in lines if iid in line]
        assert f"{iid}:5000 healthy" in line


def test_target_health_lines_in_plain_words(clients, seed):
    inject_target_health(clients, aws_health(seed.instance_ids, "unhealthy", "Target.Timeout",
                                             "Request timed out"))
    lines = target_health_lines(clients, seed.lb_dns)
    assert len(lines) == 2
    for line in lines:
        assert "Target.Timeout" in line and "0.0.0.0" in line and "Request timed out" in line


def test_target_health_lines_without_targets(clients, seed):
    seed.elbv2.deregister_targets(TargetGroupArn=seed.tg_arn,
                                  Targets=[{"Id": i, "Port": 5000} for i in seed.instance_ids])
    [line] = target_health_lines(clients, seed.lb_dns)
    assert "no targets registered" in line


def test_target_health_lines_never_raise_for_unknown_lb(clients, seed):
    [line] = target_health_lines(clients, "127.0.0.1:8080")
    assert line.startswith("target health unavailable:") and "127.0.0.1" in line


# -- the HTTP probe (real AWS only; here against a loopback server) --------------------------


@pytest.fixture
def app_answering():
    """A loopback server whose /health answers with the status the test sets; it binds
    port 0 and the test reads its port back."""
    status = {"code": 404}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, status
    server.shutdown()
    server.server_close()
    thread.join()


def test_probe_reports_the_status(app_answering):
    port, status = app_answering
    assert probe_health_check("127.0.0.1", port, "/health") == (404, "")
    status["code"] = 200
    assert probe_health_check("127.0.0.1", port, "health") == (200, "")


def test_probe_reports_a_refused_connection(free_port):
    code, why = probe_health_check("127.0.0.1", free_port, "/health", timeout=1)
    assert code is None and "connection failed" in why


def _probe_findings(clients, port: int) -> list:
    """The findings of probing one running instance on 127.0.0.1:`port` at /health."""
    exam = examination.Examination(clients, {"LoadBalancerName": "x", "DNSName": "x"}, "by test",
                                   stack=None, probe=True)
    instance = {"InstanceId": "i-1", "PublicIpAddress": "127.0.0.1",
                "State": {"Name": "running"}}
    instance_checks.maybe_probe(exam.case, "i-1", instance, port, {"HealthCheckPath": "/health"})
    return exam.findings


def test_probe_finding_from_a_real_answer(clients, seed, app_answering):
    port, _ = app_answering
    [finding] = _probe_findings(clients, port)
    assert finding.code == "HEALTH_CHECK_NOT_200" and finding.severity == ERROR
    assert "404" in finding.message


def test_no_probe_under_loopback_only(clients, seed, monkeypatch):
    """In-process moto looks like real AWS (no endpoint); SEEDLB_LOOPBACK_ONLY=1 still
    keeps the doctor from sending HTTP to the instances' (public) addresses."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("the doctor probed an instance")

    monkeypatch.setattr(instance_checks, "probe_health_check", forbidden)
    reservations = seed.ec2.describe_instances(InstanceIds=seed.instance_ids)["Reservations"]
    assert all(i.get("PublicIpAddress") for r in reservations for i in r["Instances"])
    diagnose(clients, lb=seed.lb_name)


def test_probe_wiring_when_allowed(clients, seed, monkeypatch):
    asked = []

    def fake_probe(address, port, path):
        asked.append((address, port, path))
        return 404, ""

    monkeypatch.setattr(instance_checks, "probe_health_check", fake_probe)
    findings = diagnose(clients, lb=seed.lb_name, probe=True)
    assert len(asked) == 2 and {(p, path) for _, p, path in asked} == {(5000, "/health")}
    assert "HEALTH_CHECK_NOT_200" in {f.code for f in findings}


def test_probe_that_cannot_connect_is_only_info(clients, free_port):
    [finding] = _probe_findings(clients, free_port)
    assert (finding.code, finding.severity) == ("PROBE_UNREACHABLE", "info")


def test_region_in_dns():
    from infra.aws.lb_lookup import region_in_dns

    assert region_in_dns("http://a-1.eu-west-1.elb.amazonaws.com:80/") == "eu-west-1"
    assert region_in_dns("internal-a-1.us-gov-west-1.elb.amazonaws.com") == "us-gov-west-1"
    assert region_in_dns("my-alb") is None and region_in_dns("127.0.0.1:8080") is None


def test_access_denied_is_one_clear_line(aws, seed):
    from botocore.awsrequest import AWSResponse

    from infra.aws.clients import Clients, Target

    denied = Clients(Target(region="us-east-1", endpoint_url=None))

    def refuse(**_kwargs):
        return (AWSResponse("https://elbv2.invalid/", 403, {}, None),
                {"Error": {"Code": "AccessDenied", "Message": "not for you"},
                 "ResponseMetadata": {"HTTPStatusCode": 403}})

    denied.elbv2.meta.events.register(
        "before-call.elastic-load-balancing-v2.DescribeLoadBalancers", refuse)
    with pytest.raises(UserError, match=r"AWS denied elasticloadbalancing:DescribeLoadBalancers "
                       r"while reading the stack .*\(AccessDenied\).*python -m infra policy"):
        diagnose(denied, lb=seed.lb_name)


@pytest.mark.parametrize("code", ["InvalidClientTokenId", "ExpiredToken", "AuthFailure",
                                  "UnrecognizedClientException"])
def test_rejected_credentials_are_one_clear_line(aws, seed, code):
    """The codes are failures.REJECTED_CREDENTIAL_CODES, the table deploy uses too."""
    from botocore.awsrequest import AWSResponse

    from infra.aws.clients import Clients, Target

    rejected = Clients(Target(region="us-east-1", endpoint_url=None))

    def refuse(**_kwargs):
        return (AWSResponse("https://elbv2.invalid/", 403, {}, None),
                {"Error": {"Code": code, "Message": "no such key"},
                 "ResponseMetadata": {"HTTPStatusCode": 403}})

    rejected.elbv2.meta.events.register(
        "before-call.elastic-load-balancing-v2.DescribeLoadBalancers", refuse)
    with pytest.raises(UserError, match=rf"AWS rejected the credentials \({code}, "):
        diagnose(rejected, lb=seed.lb_name)


def test_forwarded_target_groups_reads_every_forward_shape():
    """ELBv2's listener actions: a plain forward names TargetGroupArn; a weighted one lists
    ForwardConfig.TargetGroups (and AWS echoes the first as TargetGroupArn too)."""
    from infra.aws.lb_lookup import forwarded_target_groups

    assert forwarded_target_groups({"DefaultActions": [
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}},
        {"Type": "forward", "TargetGroupArn": "tg-a",
         "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "tg-a", "Weight": 1},
                                            {"TargetGroupArn": "tg-b", "Weight": 1}]}},
        {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "tg-c"}]}},
    ]}) == ["tg-a", "tg-b", "tg-c"]
    assert forwarded_target_groups({"DefaultActions": [{"Type": "redirect"}]}) == []
    assert forwarded_target_groups({}) == []
