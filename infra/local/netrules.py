"""What AWS's network would let through, for the local data path. Pure functions.

From the stack as the control plane describes it (mirror.StackView and mirror.NetworkView), the
plan says, as an ALB in a VPC would behave:

- the front: does a client on the internet reach the listener? The scheme (an internal load
  balancer has private addresses only), its subnets' routes (0.0.0.0/0 to an internet
  gateway in at least one), its security groups (the listener port from 0.0.0.0/0 or ::/0),
  and a listener on that port at all;
- the listener's action: forward to the target group, a fixed response, a redirect;
- each registered target: does the load balancer reach the instance on the target's port
  (the instance's security groups admit the load balancer's groups, or a CIDR covering the
  load balancer's subnets; the load balancer's groups let the traffic out), and does the
  app listen on that port? The same for the health check port.

The supervisor turns the plan into Caddy's config and the sinks (infra/local/sinks.py).
The rules come from infra/aws/sg_rules.py, which the doctor uses too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from infra.aws import sg_rules, subnet_routes
from infra.aws.compute import security_group_ids
from infra.config import APP_PORT, LISTENER_PORT
from infra.local.mirror import NetworkView, StackView

# What the local path does with a connection (see infra/local/sinks.py).
SERVE = "serve"  # the front: Caddy answers on the load balancer's address
DROP = "drop"  # SYNs dropped: connect() times out
REFUSE = "refuse"  # nothing listens: connect() is refused
RESET = "reset"  # a listener that does not speak HTTP: the connection closes unanswered
APP = "app"  # a target: the instance's app process
HOLD = "hold"  # a target cut off by a security group: accepted, never answered

ANYWHERE_V6 = ipaddress.ip_network("::/0")


@dataclass(frozen=True)
class Front:
    state: str  # SERVE, DROP, REFUSE or RESET
    why: str = ""


@dataclass(frozen=True)
class Action:
    """The listener's default action, as Caddy must play it."""

    kind: str  # "forward", "fixed-response", "redirect"
    status: int = 0
    body: str = ""
    content_type: str = ""
    location: str = ""


@dataclass(frozen=True)
class Route:
    """How the load balancer reaches one registered target, for traffic and health checks."""

    target_id: str
    port: int
    traffic: str  # APP, HOLD or REFUSE
    health: str  # the same, on the health check port
    health_port: int
    why: str = ""  # why traffic does not reach the app ("" when it does)
    health_why: str = ""


@dataclass(frozen=True)
class Plan:
    front: Front
    action: Action
    routes: dict[str, Route] = field(default_factory=dict)  # by target id

    @property
    def forwards(self) -> bool:
        return self.action.kind == "forward"


def _is_v6_anywhere(item: dict) -> bool:
    try:
        return ipaddress.ip_network(item.get("CidrIpv6", ""), strict=False) == ANYWHERE_V6
    except ValueError:
        return False


def _v6_anywhere_as_v4(groups: list[dict]) -> list[dict]:
    """The same rules with `::/0` written as `0.0.0.0/0` (sg_rules reads IPv4 ranges only)."""
    return [{"IpPermissions": [
        {**perm, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]
         if any(_is_v6_anywhere(r) for r in perm.get("Ipv6Ranges", [])) else []}
        for perm in group.get("IpPermissions", [])]} for group in groups]


def internet_reaches(lb_groups: list[dict], port: int) -> bool:
    """Inbound TCP `port` from the whole internet, over IPv4 (0.0.0.0/0) or IPv6 (::/0)."""
    return (sg_rules.allows_from_anywhere(lb_groups, port)
            or sg_rules.allows_from_anywhere(_v6_anywhere_as_v4(lb_groups), port))


def front_of(view: StackView, net: NetworkView, listener_port: int = LISTENER_PORT) -> Front:
    lb = net.lb
    if lb is None:
        return Front(DROP, "the stack has no load balancer: its DNS name resolves nowhere")
    name = lb.get("LoadBalancerName", "the load balancer")
    if lb.get("Scheme") == "internal":
        return Front(DROP, f"{name} is internal: only its VPC reaches its private addresses, "
                           "an internet client's connection times out")
    subnets = _lb_subnets(lb)
    if subnets and net.route_tables and all(
            subnet_routes.internet_route_problem(table_for(s, lb.get("VpcId"), net.route_tables))
            for s in subnets):
        return Front(DROP, f"none of {name}'s subnets ({', '.join(subnets)}) routes 0.0.0.0/0 "
                           "to an internet gateway: the internet cannot reach it")
    groups = [net.groups[g] for g in lb.get("SecurityGroups", []) if g in net.groups]
    if not internet_reaches(groups, listener_port):
        ids = ", ".join(lb.get("SecurityGroups", [])) or "none"
        return Front(DROP, f"{name}'s security groups ({ids}) do not admit TCP {listener_port} "
                           "from 0.0.0.0/0 or ::/0: an internet client's SYN is dropped")
    listener = listener_on(net, listener_port)
    if listener is None:
        ports = ", ".join(f"{ls.get('Protocol')}:{ls.get('Port')}" for ls in net.listeners)
        return Front(REFUSE, f"{name} has no listener on port {listener_port}"
                             f" (listeners: {ports or 'none'})")
    if listener.get("Protocol") != "HTTP":
        return Front(RESET, f"the listener on port {listener_port} speaks "
                            f"{listener.get('Protocol')}, not HTTP")
    return Front(SERVE)


def table_for(subnet_id: str, vpc_id: str | None, tables: list[dict]) -> dict | None:
    """The route table a subnet uses: its explicit association, else its VPC's main table
    (as subnet_routes.route_table_for finds it, from tables already described)."""
    for table in tables:
        if any(a.get("SubnetId") == subnet_id for a in table.get("Associations", [])):
            return table
    return next((t for t in tables if t.get("VpcId") == vpc_id and any(
        a.get("Main") for a in t.get("Associations", []))), None)


def listener_on(net: NetworkView, port: int) -> dict | None:
    return next((ls for ls in net.listeners if ls.get("Port") == port), None)


def action_of(net: NetworkView, listener_port: int = LISTENER_PORT) -> Action:
    listener = listener_on(net, listener_port)
    actions = sorted((listener or {}).get("DefaultActions", []),
                     key=lambda a: a.get("Order", 0))
    if not actions:
        return Action("fixed-response", 503, "no listener action\n", "text/plain")
    first = actions[0]
    kind = first.get("Type")
    if kind == "forward":
        return Action("forward")
    if kind == "fixed-response":
        config = first.get("FixedResponseConfig", {})
        return Action("fixed-response", int(config.get("StatusCode", "503")),
                      config.get("MessageBody", ""), config.get("ContentType", "text/plain"))
    if kind == "redirect":
        config = first.get("RedirectConfig", {})
        status = 301 if config.get("StatusCode") == "HTTP_301" else 302
        location = (f"{config.get('Protocol', '#{protocol}')}://{config.get('Host', '#{host}')}"
                    f":{config.get('Port', '#{port}')}{config.get('Path', '/#{path}')}")
        return Action("redirect", status, location=location)
    # authenticate-* and anything else: no local meaning; an ALB would not serve the app
    return Action("fixed-response", 503, f"listener action {kind} is not modelled locally\n",
                  "text/plain")


def route_of(target_id: str, port: int, health_port: int, net: NetworkView, app_port: int) -> Route:
    instance = net.instances.get(target_id)
    if instance is None:
        why = f"{target_id} is not an instance of this testbed"
        return Route(target_id, port, REFUSE, REFUSE, health_port, why, why)
    traffic, why = _reach(instance, port, net, app_port)
    if health_port == port:
        health, health_why = traffic, why
    else:
        health, health_why = _reach(instance, health_port, net, app_port)
    return Route(target_id, port, traffic, health, health_port, why, health_why)


def _reach(instance: dict, port: int, net: NetworkView, app_port: int) -> tuple[str, str]:
    lb = net.lb or {}
    lb_group_ids = set(lb.get("SecurityGroups", []))
    lb_groups = [net.groups[g] for g in lb_group_ids if g in net.groups]
    inst_ids = set(security_group_ids(instance))
    inst_groups = [net.groups[g] for g in inst_ids if g in net.groups]
    iid = instance["InstanceId"]
    lb_cidrs = [net.subnets[s]["CidrBlock"] for s in _lb_subnets(lb) if s in net.subnets]
    if not sg_rules.allows_from(inst_groups, port, lb_group_ids, lb_cidrs):
        allowed = sg_rules.describe_rule_summary(inst_groups, port)
        return HOLD, (f"{iid}'s security groups ({', '.join(sorted(inst_ids)) or 'none'}) do "
                      f"not admit TCP {port} from the load balancer's groups "
                      f"({', '.join(sorted(lb_group_ids)) or 'none'}) or its subnets "
                      f"(they admit it from: {allowed}): packets are dropped")
    private = instance.get("PrivateIpAddress")
    peers = [f"{private}/32"] if private else []
    if not sg_rules.allows_from(lb_groups, port, inst_ids, peers, egress=True):
        return HOLD, (f"the load balancer's security groups do not let TCP {port} out to {iid}: "
                      "packets are dropped")
    if port != app_port:
        return REFUSE, f"the app on {iid} listens on {app_port}, not {port}: connection refused"
    return APP, ""


def _lb_subnets(lb: dict) -> list[str]:
    return [z["SubnetId"] for z in lb.get("AvailabilityZones", []) if z.get("SubnetId")]


def plan(view: StackView, net: NetworkView, app_port: int = APP_PORT,
         listener_port: int = LISTENER_PORT) -> Plan:
    """The local data path for the stack as it is now."""
    routes = {}
    health = view.health
    for target in view.in_service:
        hc_port = health.port if health is not None else "traffic-port"
        health_port = int(hc_port) if str(hc_port).isdigit() else target.port
        routes[target.id] = route_of(target.id, target.port, health_port, net, app_port)
    return Plan(front_of(view, net, listener_port), action_of(net, listener_port), routes)
