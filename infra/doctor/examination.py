"""The doctor's checks, in the order a request travels: load balancer, its security group
and subnets, the listener, the target group, each target's health, the instances.

One `Examination` per load balancer; each check appends `Finding`s. Read-only.
"""

from __future__ import annotations

import fnmatch
import functools

from infra.aws import console_output, lb_lookup, sg_rules, subnet_routes
from infra.aws.clients import Clients
from infra.aws.compute import security_group_ids
from infra.config import APP_PORT, HEALTH_CHECK_PATH, LISTENER_PORT
from infra.doctor.findings import ERROR, INFO, WARNING, Finding, sort_findings
from infra.doctor.health_probe import probe_health_check
from infra.doctor.target_reasons import SERVING_STATES, reason_for


def target_health(clients: Clients, tg_arn: str) -> list[dict]:
    return clients.elbv2.describe_target_health(TargetGroupArn=tg_arn)[
        "TargetHealthDescriptions"]


def load_balancer_target_groups(clients: Clients, lb: dict) -> list[dict]:
    return clients.elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])[
        "TargetGroups"]


def _forwarded_groups(listener: dict) -> list[str]:
    """Target group ARNs the listener's default action forwards to."""
    arns: list[str] = []
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            arns.append(action["TargetGroupArn"])
        for item in action.get("ForwardConfig", {}).get("TargetGroups", []):
            if item.get("TargetGroupArn") and item["TargetGroupArn"] not in arns:
                arns.append(item["TargetGroupArn"])
    return arns


class Examination:
    """One pass over one load balancer; each check appends findings."""

    def __init__(self, clients: Clients, lb: dict, how: str, *, stack: str | None,
                 probe: bool):
        self.clients = clients
        self.ec2 = clients.ec2
        self.elbv2 = clients.elbv2
        self.lb = lb
        self.how = how
        self.stack = stack
        self.probe = probe
        self.findings: list[Finding] = []
        self.lb_groups: list[dict] = []
        self.health: dict[str, list[dict]] = {}  # target group ARN -> DescribeTargetHealth
        self.lb_subnets = [az["SubnetId"] for az in lb.get("AvailabilityZones", [])
                           if az.get("SubnetId")]
        self.lb_zones = {az["ZoneName"] for az in lb.get("AvailabilityZones", [])}

    def add(self, severity: str, code: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(severity, code, message, fix))

    @property
    def name(self) -> str:
        return self.lb["LoadBalancerName"]

    def run(self) -> list[Finding]:
        self.add(INFO, "LB_FOUND",
                 f"load balancer {self.name} ({self.lb.get('Scheme')}, "
                 f"{self.lb['DNSName']}) found {self.how}")
        self.check_load_balancer()
        self.check_lb_security_groups()
        self.check_lb_subnets()
        listener_groups = self.check_listeners()
        for tg in self.choose_target_groups(listener_groups):
            self.check_target_group(tg)
        found, rest = self.findings[0], self.findings[1:]
        return [found, *sort_findings(rest)]

    # -- the load balancer itself ------------------------------------------------------

    def check_load_balancer(self) -> None:
        lb = self.lb
        if lb.get("Type", "application") != "application":
            self.add(ERROR, "LB_NOT_APPLICATION",
                     f"{self.name} is a {lb['Type']} load balancer",
                     "create an Application Load Balancer (FAQ 6): HTTP listener on 80")
        if lb.get("Scheme") == "internal":
            self.add(ERROR, "LB_INTERNAL",
                     f"{self.name} is internal: its DNS name resolves to private addresses, "
                     "so the autograder on the internet cannot reach it",
                     "create the load balancer again with Scheme: Internet-facing (the scheme "
                     "cannot be changed afterwards), in public subnets")
        state = lb.get("State", {}).get("Code", "active")
        if state == "provisioning":
            self.add(WARNING, "LB_NOT_ACTIVE", f"{self.name} is still provisioning",
                     "wait a few minutes and run the doctor again")
        elif state != "active":
            self.add(ERROR, "LB_NOT_ACTIVE", f"{self.name} is in state {state}: "
                     f"{lb.get('State', {}).get('Reason', '')}".rstrip(": "),
                     "fix the reason AWS gives, or create the load balancer again")

    def check_lb_security_groups(self) -> None:
        ids = self.lb.get("SecurityGroups", [])
        if not ids:
            self.add(ERROR, "LB_SG_NO_HTTP", f"{self.name} has no security group",
                     "attach a security group that allows HTTP (TCP 80) from 0.0.0.0/0")
            return
        self.lb_groups = self.ec2.describe_security_groups(GroupIds=ids)["SecurityGroups"]
        for group in self.lb_groups:
            if group.get("GroupName") == "default":
                self.add(ERROR, "DEFAULT_SG_ON_LB",
                         f"{self.name} uses the VPC's default security group {group['GroupId']}",
                         "create a new security group (HTTP, TCP 80, source 0.0.0.0/0) and "
                         "use it instead of the default one, as the seed's step 3 says")
        if not sg_rules.allows_from_anywhere(self.lb_groups, LISTENER_PORT):
            allowed = sg_rules.describe_rule_summary(self.lb_groups, LISTENER_PORT)
            self.add(ERROR, "LB_SG_NO_HTTP",
                     f"{self.name}'s security group(s) {', '.join(ids)} do not allow TCP "
                     f"{LISTENER_PORT} from 0.0.0.0/0 (they allow it from: {allowed}); the "
                     "autograder's connection times out (FAQ 5, 6)",
                     f"add an inbound rule: HTTP, TCP {LISTENER_PORT}, source Anywhere "
                     "(0.0.0.0/0)")

    def check_lb_subnets(self) -> None:
        problems = subnet_routes.subnets_without_internet(self.ec2, self.lb_subnet_details)
        for subnet_id, problem in sorted(problems.items()):
            severity = ERROR if self.lb.get("Scheme") != "internal" else WARNING
            self.add(severity, "SUBNET_NO_IGW_ROUTE",
                     f"load balancer subnet {subnet_id} has no route to the internet: {problem}",
                     "in that subnet's route table add a route 0.0.0.0/0 -> the VPC's internet "
                     "gateway (attach one if the VPC has none), or use public subnets")

    # -- the listener --------------------------------------------------------------------

    def check_listeners(self) -> list[str]:
        """Findings about the listener; returns the target group ARNs it forwards to."""
        pages = self.elbv2.get_paginator("describe_listeners").paginate(
            LoadBalancerArn=self.lb["LoadBalancerArn"])
        listeners = [ls for page in pages for ls in page["Listeners"]]
        if not listeners:
            self.add(ERROR, "LISTENER_MISSING", f"{self.name} has no listener",
                     f"add a listener: HTTP on port {LISTENER_PORT}, default action forward to "
                     "your target group")
            return []
        on_80 = [ls for ls in listeners if ls.get("Port") == LISTENER_PORT]
        if not on_80:
            ports = ", ".join(f"{ls.get('Protocol')}:{ls.get('Port')}" for ls in listeners)
            self.add(ERROR, "LISTENER_WRONG_PORT",
                     f"{self.name} listens on {ports}, not on {LISTENER_PORT}; the autograder "
                     "uses the bare DNS name, i.e. port 80 (FAQ 3)",
                     f"add a listener HTTP:{LISTENER_PORT} forwarding to your target group")
            forwarded = [arn for ls in listeners for arn in _forwarded_groups(ls)]
            return list(dict.fromkeys(forwarded))
        listener = on_80[0]
        if listener.get("Protocol") != "HTTP":
            self.add(ERROR, "LISTENER_NOT_HTTP",
                     f"the listener on {LISTENER_PORT} speaks {listener.get('Protocol')}, "
                     "not HTTP",
                     f"make the listener on {LISTENER_PORT} plain HTTP")
        forwarded = _forwarded_groups(listener)
        if not forwarded:
            forwarded = self.rule_forwarding_root(listener)
            if forwarded:
                return forwarded
            kinds = ", ".join(a.get("Type", "?") for a in listener.get("DefaultActions", []))
            self.add(ERROR, "LISTENER_NOT_FORWARDING",
                     f"the listener on {LISTENER_PORT} does not forward to a target group "
                     f"(its default action: {kinds or 'none'})",
                     "edit the listener: default action 'Forward to' your target group")
        return forwarded

    def rule_forwarding_root(self, listener: dict) -> list[str]:
        """Target groups of a listener rule that forwards `GET /` whatever the host (a path
        pattern such as /* and no other condition): it serves the grader as well as a
        forwarding default action would."""
        rules = self.elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
        for rule in sorted((r for r in rules if not r.get("IsDefault")),
                           key=lambda r: int(r.get("Priority", "0") or 0)):
            conditions = rule.get("Conditions", [])
            patterns = [v for c in conditions if c.get("Field") == "path-pattern"
                        for v in (c.get("PathPatternConfig", {}).get("Values")
                                  or c.get("Values", []))]
            only_paths = all(c.get("Field") == "path-pattern" for c in conditions)
            if only_paths and any(fnmatch.fnmatchcase("/", p) for p in patterns):
                return _forwarded_groups({"DefaultActions": rule.get("Actions", [])})
        return []

    def choose_target_groups(self, forwarded: list[str]) -> list[dict]:
        """The target groups to examine: the ones the stack (or the user) meant to use.

        With --stack that is the stack's tagged group. For a hand-made stack it is the one
        the listener forwards to, unless that one is empty while another group in the VPC
        holds targets: then the listener points at the wrong group.
        """
        groups = {tg["TargetGroupArn"]: tg for tg in lb_lookup.all_target_groups(self.elbv2)}
        forwarded_groups = [groups[arn] for arn in forwarded if arn in groups]
        health = {arn: target_health(self.clients, arn) for arn in groups
                  if groups[arn].get("VpcId") == self.lb.get("VpcId")}
        if self.stack:
            # the groups listed above: no second DescribeTargetGroups
            intended = lb_lookup.stack_tagged(self.elbv2, list(groups.values()),
                                              "TargetGroupArn", self.stack)
        elif any(health.get(tg["TargetGroupArn"]) for tg in forwarded_groups):
            intended = forwarded_groups
        else:
            # groups with targets that no other load balancer uses: the student's own
            intended = [tg for arn, tg in groups.items()
                        if health.get(arn) and arn not in forwarded
                        and set(tg.get("LoadBalancerArns", [])) <= {self.lb["LoadBalancerArn"]}]
        self.health = health
        intended_arns = {tg["TargetGroupArn"] for tg in intended}
        if forwarded_groups and intended and not intended_arns & set(forwarded):
            names = ", ".join(tg["TargetGroupName"] for tg in forwarded_groups)
            meant = ", ".join(tg["TargetGroupName"] for tg in intended)
            self.add(ERROR, "LISTENER_WRONG_TARGET_GROUP",
                     f"the listener forwards to {names}, but the instances are registered in "
                     f"{meant}",
                     f"edit the listener's default action: forward to {meant}")
        return intended or forwarded_groups

    # -- the target group and its targets -------------------------------------------------

    def check_target_group(self, tg: dict) -> None:
        name = tg["TargetGroupName"]
        if tg.get("Protocol") not in (None, "HTTP"):
            self.add(ERROR, "TG_PROTOCOL", f"target group {name} uses {tg.get('Protocol')}",
                     f"use a target group with protocol HTTP, port {APP_PORT} (the app speaks "
                     "plain HTTP)")
        targets = self.health.get(tg["TargetGroupArn"])
        if targets is None:
            targets = target_health(self.clients, tg["TargetGroupArn"])
        self.check_ports(tg, targets)
        self.check_health_check_settings(tg)
        if not targets:
            self.add(ERROR, "TARGETS_NONE", f"target group {name} has no registered targets, "
                     "so the load balancer answers 503",
                     f"register both EC2 instances in {name} on port {APP_PORT}")
            return
        if len(targets) == 1:
            self.add(WARNING, "TARGETS_ONLY_ONE",
                     f"target group {name} has one target; the assignment needs two instances "
                     "sharing the traffic",
                     "register the second instance too")
        self.check_target_health(tg, targets)
        self.check_boot_logs(tg, targets)
        self.check_instances(tg, targets)

    def check_ports(self, tg: dict, targets: list[dict]) -> None:
        if tg.get("TargetType") == "lambda":
            return  # no port: TG_PROTOCOL and the listener findings say enough
        ports = sorted({d["Target"].get("Port") or tg.get("Port") for d in targets}
                       or {tg.get("Port")}, key=lambda p: p or 0)
        wrong = [p for p in ports if p != APP_PORT]
        if wrong:
            where = (f"target group {tg['TargetGroupName']} sends traffic to port(s) "
                     f"{', '.join(str(p) for p in wrong)}")
            self.add(ERROR, "TG_PORT_MISMATCH",
                     f"{where}, but the app listens on {APP_PORT} (the load balancer answers "
                     "502 or the targets are unhealthy)",
                     f"create a target group on port {APP_PORT} (HTTP) and register the "
                     f"instances on {APP_PORT}; the listener stays on {LISTENER_PORT}")

    def check_health_check_settings(self, tg: dict) -> None:
        name = tg["TargetGroupName"]
        if tg.get("HealthCheckEnabled") is False:
            return  # reported per target as Target.HealthCheckDisabled by AWS
        hc_port = str(tg.get("HealthCheckPort", "traffic-port"))
        if hc_port not in ("traffic-port", str(APP_PORT)):
            self.add(ERROR, "HEALTH_CHECK_PORT",
                     f"target group {name} health-checks port {hc_port}, not the app's "
                     f"{APP_PORT}",
                     "set the health check port to 'traffic port'")
        matcher = str(tg.get("Matcher", {}).get("HttpCode", "200"))
        if not _code_matches(matcher, 200):
            self.add(WARNING, "HEALTH_CHECK_MATCHER",
                     f"target group {name} expects health check codes {matcher}, but the "
                     "app's health check answers 200",
                     "set the success codes to 200")
        path = tg.get("HealthCheckPath") or "/"
        if path not in (HEALTH_CHECK_PATH, "/"):
            # only AWS's Target.ResponseCodeMismatch (or the probe) can tell if it answers 200
            self.add(INFO, "HEALTH_CHECK_PATH",
                     f"target group {name} health-checks GET {path}; this project's app "
                     f"answers 200 on {HEALTH_CHECK_PATH} and /")

    def check_target_health(self, tg: dict, targets: list[dict]) -> None:
        by_reason: dict[str | None, list[dict]] = {}
        healthy = 0
        for desc in targets:
            state = desc.get("TargetHealth", {}).get("State", "unknown")
            if state in SERVING_STATES:
                healthy += 1
                continue
            by_reason.setdefault(desc["TargetHealth"].get("Reason"), []).append(desc)
        for reason_code, descs in by_reason.items():
            reason = reason_for(reason_code)
            ids = ", ".join(f"{d['Target']['Id']}" for d in descs)
            states = sorted({d["TargetHealth"].get("State", "?") for d in descs})
            aws_says = "; ".join(sorted({d["TargetHealth"].get("Description", "")
                                         for d in descs} - {""}))
            message = (f"{ids} in {tg['TargetGroupName']}: {'/'.join(states)}"
                       f"{f' ({reason_code})' if reason_code else ''}: {reason.meaning}")
            if reason_code == "Target.ResponseCodeMismatch":
                message += f" (health check path {tg.get('HealthCheckPath', '?')})"
            if aws_says:
                message += f". AWS says: {aws_says}"
            self.add(reason.severity, reason.code, message, reason.fix)
        if healthy:
            self.add(INFO, "TARGETS_HEALTHY",
                     f"{healthy} of {len(targets)} target(s) in {tg['TargetGroupName']} "
                     "are healthy")

    def check_boot_logs(self, tg: dict, targets: list[dict]) -> None:
        """An unhealthy instance whose console shows that its boot script failed: quote the
        script's FAILED line (infra/aws/templates/user_data.sh) and what it printed just
        before. GetConsoleOutput is read for unhealthy instance targets only."""
        if tg.get("TargetType", "instance") != "instance":
            return
        for desc in targets:
            if desc.get("TargetHealth", {}).get("State") != "unhealthy":
                continue
            iid = desc["Target"]["Id"]
            log = console_output.boot_log(self.ec2, {"InstanceId": iid})
            if log.error:
                self.add(INFO, "BOOT_LOG_UNREADABLE",
                         f"could not read instance {iid}'s console output ({log.error})")
                continue
            if not log.failed:
                continue
            before = log.before_failure(3)
            self.add(ERROR, "BOOT_SCRIPT_FAILED",
                     f"instance {iid}'s boot script (user data) failed, so the app never "
                     f"started: its console says {log.verdict!r}"
                     + (f", after {' / '.join(repr(b) for b in before)}" if before else ""),
                     f"`make logs` shows its console (aws ec2 get-console-output --instance-id "
                     f"{iid}); fix what it names, then launch the instance again: user data "
                     "runs on the first boot only")

    # -- the instances -------------------------------------------------------------------

    def check_instances(self, tg: dict, targets: list[dict]) -> None:
        instances = self.instances_for(tg, targets)
        ports = {d["Target"]["Id"]: d["Target"].get("Port") or tg.get("Port") for d in targets}
        # instances sharing the same security groups and port get one finding, not one each
        by_groups: dict[tuple[tuple[str, ...], int], list[dict]] = {}
        for target_id, instance in instances.items():
            port = ports.get(target_id) or APP_PORT
            if instance is None:
                self.add(ERROR, "INSTANCE_NOT_RUNNING",
                         f"target {target_id} is not an existing EC2 instance",
                         "register the two running instances instead")
                continue
            iid = instance["InstanceId"]
            state = instance.get("State", {}).get("Name", "unknown")
            if state != "running":
                self.add(ERROR, "INSTANCE_NOT_RUNNING", f"instance {iid} is {state}",
                         "start it (EC2 > Instances > Start), then ssh in and start the app "
                         "again: a restart does not restart a hand-started app (FAQ 4)")
            zone = instance.get("Placement", {}).get("AvailabilityZone")
            if zone and self.lb_zones and zone not in self.lb_zones:
                self.add(ERROR, "INSTANCE_AZ_NOT_ENABLED",
                         f"instance {iid} is in {zone}, where {self.name} has no subnet, so it "
                         "gets no traffic",
                         f"add a subnet in {zone} to the load balancer's network mapping")
            key = (tuple(sorted(security_group_ids(instance))), port)
            by_groups.setdefault(key, []).append(instance)
            self.maybe_probe(iid, instance, port, tg)
        for (ids, port), members in by_groups.items():
            self.check_instance_groups(list(ids), port, members)
        subnets = {i["SubnetId"] for i in instances.values() if i and i.get("SubnetId")}
        others = subnet_routes.describe_subnets(self.ec2, sorted(subnets - set(self.lb_subnets)))
        for subnet_id, problem in sorted(subnet_routes.subnets_without_internet(
                self.ec2, others).items()):
            self.add(WARNING, "INSTANCE_SUBNET_NO_IGW_ROUTE",
                     f"instance subnet {subnet_id} has no route to the internet: {problem}; "
                     "you cannot ssh in and the instance cannot install packages",
                     "add a route 0.0.0.0/0 -> the internet gateway to its route table")

    def check_instance_groups(self, ids: list[str], port: int, members: list[dict]) -> None:
        """Do these instances' groups admit the LB, and does the LB's group let it out?"""
        who = ", ".join(i["InstanceId"] for i in members)
        plural = "s" if len(members) > 1 else ""
        groups = self.ec2.describe_security_groups(GroupIds=ids)["SecurityGroups"] if ids else []
        for group in groups:
            if group.get("GroupName") == "default":
                self.add(WARNING, "DEFAULT_SG_ON_INSTANCE",
                         f"instance{plural} {who} use{'' if plural else 's'} the VPC's default "
                         f"security group {group['GroupId']}, which only admits its own members",
                         "give the instances their own security group: TCP "
                         f"{APP_PORT} from the load balancer's security group, SSH from you")
        lb_group_ids = {g["GroupId"] for g in self.lb_groups}
        if not sg_rules.allows_from(groups, port, lb_group_ids, self.lb_subnet_cidrs):
            self.add(ERROR, "INSTANCE_SG_BLOCKS_LB",
                     f"instance{plural} {who}: security group(s) {', '.join(ids) or '(none)'} "
                     f"do not allow TCP {port} from the load balancer's security group "
                     f"({', '.join(sorted(lb_group_ids)) or 'none'}) or its subnets "
                     f"(allowed: {sg_rules.describe_rule_summary(groups, port)}); health "
                     "checks time out and the load balancer answers 502/503 (FAQ 6)",
                     f"add an inbound rule to the instances' security group: Custom TCP {port}, "
                     "source the load balancer's security group (seed step 2)")
        private = [f"{i['PrivateIpAddress']}/32" for i in members if i.get("PrivateIpAddress")]
        if self.lb_groups and private and not sg_rules.allows_from(
                self.lb_groups, port, set(ids), private, egress=True):
            self.add(ERROR, "LB_SG_EGRESS_BLOCKED",
                     f"the load balancer's security group does not allow outbound TCP {port} "
                     f"to instance{plural} {who}",
                     "restore the outbound rule 'All traffic to 0.0.0.0/0', or allow TCP "
                     f"{port} to the instances' security group")

    def instances_for(self, tg: dict, targets: list[dict]) -> dict[str, dict | None]:
        """target id -> its EC2 instance (None when there is no such instance)."""
        if tg.get("TargetType") == "lambda":
            return {}
        ids = [d["Target"]["Id"] for d in targets]
        if tg.get("TargetType") == "ip":
            key, field = "private-ip-address", "PrivateIpAddress"
        else:
            key, field = "instance-id", "InstanceId"
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": key, "Values": ids}])
        found = {inst[field]: inst for page in pages for res in page["Reservations"]
                 for inst in res["Instances"]}
        return {target_id: found.get(target_id) for target_id in ids}

    @functools.cached_property
    def lb_subnet_details(self) -> list[dict]:
        """DescribeSubnets of the LB's subnets, once: for their routes and their CIDRs."""
        return subnet_routes.describe_subnets(self.ec2, self.lb_subnets)

    @property
    def lb_subnet_cidrs(self) -> list[str]:
        return [s["CidrBlock"] for s in self.lb_subnet_details if s.get("CidrBlock")]

    def maybe_probe(self, iid: str, instance: dict, port: int, tg: dict) -> None:
        """Real AWS only: GET the health check path on the instance's public address."""
        address = instance.get("PublicIpAddress")
        if not self.probe or not address or instance.get("State", {}).get("Name") != "running":
            return
        path = tg.get("HealthCheckPath") or HEALTH_CHECK_PATH
        status, error = probe_health_check(address, port, path)
        if status is None:
            self.add(INFO, "PROBE_UNREACHABLE",
                     f"could not GET http://{address}:{port}{path} from here ({error}); that is "
                     "normal when the instances only admit the load balancer")
        elif status != 200:
            self.add(ERROR, "HEALTH_CHECK_NOT_200",
                     f"GET http://{address}:{port}{path} on instance {iid} answered {status}, "
                     "not 200",
                     f"point the target group's health check path at {HEALTH_CHECK_PATH} "
                     "(or /), which the app answers with 200")


def _code_matches(matcher: str, code: int) -> bool:
    """Does an ALB success-code matcher ("200", "200,302", "200-299") include `code`?"""
    for part in matcher.split(","):
        part = part.strip()
        if "-" in part:
            low, _, high = part.partition("-")
            if low.isdigit() and high.isdigit() and int(low) <= code <= int(high):
                return True
        elif part.isdigit() and int(part) == code:
            return True
    return False
