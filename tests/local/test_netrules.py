"""AWS's network rules for the local data path (infra/local/netrules.py), on stacks described
the way DescribeLoadBalancers, DescribeSecurityGroups and friends describe them."""

from __future__ import annotations

import pytest

from infra.local import netrules
from infra.local.mirror import HealthCheck, NetworkView, StackView, TargetView

LB_SG, APP_SG, DEFAULT_SG = "sg-lb", "sg-app", "sg-default"
ALL_OUT = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
HTTP_ANYWHERE = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                  "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
APP_FROM_LB = [{"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
                "UserIdGroupPairs": [{"GroupId": LB_SG}]}]


def group(gid: str, ingress: list[dict], egress: list[dict] | None = None,
          name: str = "") -> dict:
    return {"GroupId": gid, "GroupName": name or gid, "IpPermissions": ingress,
            "IpPermissionsEgress": ALL_OUT if egress is None else egress}


def igw_table(*subnets: str) -> dict:
    return {"RouteTableId": "rtb-public", "VpcId": "vpc-1",
            "Routes": [{"DestinationCidrBlock": "10.42.0.0/16", "GatewayId": "local"},
                       {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"}],
            "Associations": [{"SubnetId": s} for s in subnets]}


MAIN_TABLE = {"RouteTableId": "rtb-main", "VpcId": "vpc-1",
              "Routes": [{"DestinationCidrBlock": "10.42.0.0/16", "GatewayId": "local"}],
              "Associations": [{"Main": True}]}


def stack(*, lb_groups=(LB_SG,), scheme="internet-facing", listeners=None, groups=None,
          instance_groups=(APP_SG,), targets=(("i-1", 5000), ("i-2", 5000)),
          tables=None, hc_port="traffic-port"):
    lb = {"LoadBalancerName": "seed-lb-alb", "Scheme": scheme, "VpcId": "vpc-1",
          "SecurityGroups": list(lb_groups),
          "AvailabilityZones": [{"ZoneName": "us-east-1a", "SubnetId": "subnet-a"},
                                {"ZoneName": "us-east-1b", "SubnetId": "subnet-b"}]}
    if listeners is None:
        listeners = [{"Port": 80, "Protocol": "HTTP",
                      "DefaultActions": [{"Type": "forward", "TargetGroupArn": "arn:tg"}]}]
    all_groups = {LB_SG: group(LB_SG, HTTP_ANYWHERE), APP_SG: group(APP_SG, APP_FROM_LB),
                  DEFAULT_SG: group(DEFAULT_SG, [{"IpProtocol": "-1", "UserIdGroupPairs": [
                      {"GroupId": DEFAULT_SG}]}], name="default")}
    all_groups.update(groups or {})
    instances = {iid: {"InstanceId": iid, "PrivateIpAddress": f"10.42.{n}.10",
                       "SecurityGroups": [{"GroupId": g} for g in instance_groups]}
                 for n, (iid, _port) in enumerate(targets)}
    net = NetworkView(lb=lb, listeners=listeners, groups=all_groups, instances=instances,
                  subnets={"subnet-a": {"SubnetId": "subnet-a", "CidrBlock": "10.42.0.0/24"},
                           "subnet-b": {"SubnetId": "subnet-b", "CidrBlock": "10.42.1.0/24"}},
                  route_tables=[igw_table("subnet-a", "subnet-b"), MAIN_TABLE]
                  if tables is None else tables)
    health = HealthCheck("/health", 5, 3, 2, 2, "200", port=hc_port)
    view = StackView("s", [t for t, _ in targets], "arn:lb", "dns", 80, "arn:tg", 5000, health,
                     [TargetView(t, p, "healthy") for t, p in targets])
    return netrules.plan(view, net, app_port=5000)


def test_the_stack_as_deployed_serves_every_target():
    plan = stack()
    assert plan.front == netrules.Front(netrules.SERVE)
    assert plan.action.kind == "forward"
    assert {r.traffic for r in plan.routes.values()} == {netrules.APP}
    assert {r.health for r in plan.routes.values()} == {netrules.APP}


def test_an_instance_group_without_the_lb_rule_drops_its_packets():
    plan = stack(groups={APP_SG: group(APP_SG, [])})
    route = plan.routes["i-1"]
    assert (route.traffic, route.health) == (netrules.HOLD, netrules.HOLD)
    assert "do not admit TCP 5000" in route.why and LB_SG in route.why
    assert plan.front.state == netrules.SERVE  # the load balancer itself still answers


@pytest.mark.parametrize(("cidr", "reaches"), [
    ("10.42.0.0/16", True),  # covers both of the load balancer's subnets
    ("10.42.0.0/24", False),  # only one of them: the nodes in the other are dropped
    ("0.0.0.0/0", True),
])
def test_a_cidr_rule_must_cover_the_lb_subnets(cidr, reaches):
    rule = [{"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
             "IpRanges": [{"CidrIp": cidr}]}]
    plan = stack(groups={APP_SG: group(APP_SG, rule)})
    assert (plan.routes["i-1"].traffic == netrules.APP) is reaches


def test_the_lb_group_must_let_the_traffic_out():
    plan = stack(groups={LB_SG: group(LB_SG, HTTP_ANYWHERE, egress=[])})
    assert plan.routes["i-2"].traffic == netrules.HOLD
    assert "let TCP 5000 out" in plan.routes["i-2"].why


def test_a_target_port_the_app_does_not_listen_on():
    # The console's default target port 80: the app group admits only 5000, so it drops...
    plan = stack(targets=(("i-1", 80),))
    assert plan.routes["i-1"].traffic == netrules.HOLD
    # ...and a group that admits everything lets the SYN reach a port nothing listens on.
    everything = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": LB_SG}]}]
    plan = stack(targets=(("i-1", 80),), groups={APP_SG: group(APP_SG, everything)})
    assert plan.routes["i-1"].traffic == netrules.REFUSE
    assert "listens on 5000, not 80" in plan.routes["i-1"].why


def test_the_health_check_port_is_checked_on_its_own():
    plan = stack(hc_port="8080")
    route = plan.routes["i-1"]
    assert (route.traffic, route.health, route.health_port) == (netrules.APP, netrules.HOLD, 8080)


@pytest.mark.parametrize(("change", "state", "words"), [
    ({"scheme": "internal"}, netrules.DROP, "internal"),
    ({"groups": {LB_SG: group(LB_SG, [])}}, netrules.DROP, "do not admit TCP 80"),
    ({"lb_groups": (DEFAULT_SG,)}, netrules.DROP, "do not admit TCP 80"),
    ({"listeners": []}, netrules.REFUSE, "no listener on port 80"),
    ({"listeners": [{"Port": 8080, "Protocol": "HTTP", "DefaultActions": [
        {"Type": "forward", "TargetGroupArn": "arn:tg"}]}]}, netrules.REFUSE, "HTTP:8080"),
    ({"listeners": [{"Port": 80, "Protocol": "HTTPS", "DefaultActions": [
        {"Type": "forward", "TargetGroupArn": "arn:tg"}]}]}, netrules.RESET, "HTTPS"),
    ({"tables": [MAIN_TABLE]}, netrules.DROP, "internet gateway"),
])
def test_what_an_internet_client_reaches(change, state, words):
    front = stack(**change).front
    assert front.state == state
    assert words in front.why


def test_the_default_group_on_the_lb_also_cuts_the_targets_off():
    plan = stack(lb_groups=(DEFAULT_SG,))
    assert {r.traffic for r in plan.routes.values()} == {netrules.HOLD}


def test_ipv6_anywhere_alone_admits_the_internet():
    v6_only = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    assert stack(groups={LB_SG: group(LB_SG, v6_only)}).front.state == netrules.SERVE
    v6_narrow = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                  "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]}]
    assert stack(groups={LB_SG: group(LB_SG, v6_narrow)}).front.state == netrules.DROP


def test_one_public_subnet_is_enough_for_the_front():
    plan = stack(tables=[igw_table("subnet-a"), MAIN_TABLE])
    assert plan.front.state == netrules.SERVE


def test_listener_actions_other_than_forward():
    fixed = [{"Port": 80, "Protocol": "HTTP", "DefaultActions": [{
        "Type": "fixed-response", "FixedResponseConfig": {
            "StatusCode": "418", "MessageBody": "teapot", "ContentType": "text/plain"}}]}]
    action = stack(listeners=fixed).action
    assert (action.kind, action.status, action.body) == ("fixed-response", 418, "teapot")
    redirect = [{"Port": 80, "Protocol": "HTTP", "DefaultActions": [{
        "Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                               "StatusCode": "HTTP_301"}}]}]
    action = stack(listeners=redirect).action
    assert (action.kind, action.status) == ("redirect", 301)
    assert action.location.startswith("HTTPS://#{host}:443")


def test_a_target_that_is_no_instance_of_the_testbed_is_refused():
    plan = stack()
    assert netrules.route_of("i-elsewhere", 5000, 5000, NetworkView(), 5000).traffic == \
        netrules.REFUSE
    assert set(plan.routes) == {"i-1", "i-2"}
