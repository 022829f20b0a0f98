"""The listener on port 80: HTTP, and forwarding to a target group (by its default action,
or by a rule that forwards `GET /` whatever the host)."""

from __future__ import annotations

import fnmatch

from infra.aws.lb_lookup import forwarded_target_groups
from infra.config import LISTENER_PORT
from infra.doctor.case import Case
from infra.doctor.findings import ERROR


def check_listeners(case: Case) -> list[str]:
    """Findings about the listener; returns the target group ARNs it forwards to."""
    pages = case.elbv2.get_paginator("describe_listeners").paginate(
        LoadBalancerArn=case.lb["LoadBalancerArn"])
    listeners = [ls for page in pages for ls in page["Listeners"]]
    if not listeners:
        case.add(ERROR, "LISTENER_MISSING", f"{case.name} has no listener",
                 f"add a listener: HTTP on port {LISTENER_PORT}, default action forward to "
                 "your target group")
        return []
    on_80 = [ls for ls in listeners if ls.get("Port") == LISTENER_PORT]
    if not on_80:
        ports = ", ".join(f"{ls.get('Protocol')}:{ls.get('Port')}" for ls in listeners)
        case.add(ERROR, "LISTENER_WRONG_PORT",
                 f"{case.name} listens on {ports}, not on {LISTENER_PORT}; the autograder "
                 "uses the bare DNS name, i.e. port 80 (FAQ 3)",
                 f"add a listener HTTP:{LISTENER_PORT} forwarding to your target group")
        forwarded = [arn for ls in listeners for arn in forwarded_target_groups(ls)]
        return list(dict.fromkeys(forwarded))
    listener = on_80[0]
    if listener.get("Protocol") != "HTTP":
        case.add(ERROR, "LISTENER_NOT_HTTP",
                 f"the listener on {LISTENER_PORT} speaks {listener.get('Protocol')}, "
                 "not HTTP",
                 f"make the listener on {LISTENER_PORT} plain HTTP")
    forwarded = forwarded_target_groups(listener)
    if not forwarded:
        forwarded = rule_forwarding_root(case, listener)
        if forwarded:
            return forwarded
        kinds = ", ".join(a.get("Type", "?") for a in listener.get("DefaultActions", []))
        case.add(ERROR, "LISTENER_NOT_FORWARDING",
                 f"the listener on {LISTENER_PORT} does not forward to a target group "
                 f"(its default action: {kinds or 'none'})",
                 "edit the listener: default action 'Forward to' your target group")
    return forwarded


def rule_forwarding_root(case: Case, listener: dict) -> list[str]:
    """Target groups of a listener rule that forwards `GET /` whatever the host (a path
    pattern such as /* and no other condition): it serves the grader as well as a
    forwarding default action would."""
    rules = case.elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    for rule in sorted((r for r in rules if not r.get("IsDefault")),
                       key=lambda r: int(r.get("Priority", "0") or 0)):
        conditions = rule.get("Conditions", [])
        patterns = [v for c in conditions if c.get("Field") == "path-pattern"
                    for v in (c.get("PathPatternConfig", {}).get("Values")
                              or c.get("Values", []))]
        only_paths = all(c.get("Field") == "path-pattern" for c in conditions)
        if only_paths and any(fnmatch.fnmatchcase("/", p) for p in patterns):
            return forwarded_target_groups({"DefaultActions": rule.get("Actions", [])})
    return []
