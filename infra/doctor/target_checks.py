"""The target group and its targets: protocol and port, the health check's settings, how
many targets, each target's health in plain words (target_reasons.py), and the boot log of
an instance whose boot script failed."""

from __future__ import annotations

from infra.aws import console_output
from infra.config import APP_PORT, HEALTH_CHECK_PATH, LISTENER_PORT, success_codes_include
from infra.doctor.case import Case, target_health
from infra.doctor.findings import ERROR, INFO, WARNING
from infra.doctor.target_reasons import SERVING_STATES, reason_for


def check_target_group(case: Case, tg: dict) -> list[dict]:
    """Its protocol, port and health check settings, and whether it has targets (two);
    returns its targets' health descriptions."""
    name = tg["TargetGroupName"]
    if tg.get("Protocol") not in (None, "HTTP"):
        case.add(ERROR, "TG_PROTOCOL", f"target group {name} uses {tg.get('Protocol')}",
                 f"use a target group with protocol HTTP, port {APP_PORT} (the app speaks "
                 "plain HTTP)")
    targets = case.health.get(tg["TargetGroupArn"])
    if targets is None:
        targets = target_health(case.clients, tg["TargetGroupArn"])
    check_ports(case, tg, targets)
    check_health_check_settings(case, tg)
    if not targets:
        case.add(ERROR, "TARGETS_NONE", f"target group {name} has no registered targets, "
                 "so the load balancer answers 503",
                 f"register both EC2 instances in {name} on port {APP_PORT}")
        return []
    if len(targets) == 1:
        case.add(WARNING, "TARGETS_ONLY_ONE",
                 f"target group {name} has one target; the assignment needs two instances "
                 "sharing the traffic",
                 "register the second instance too")
    return targets


def check_ports(case: Case, tg: dict, targets: list[dict]) -> None:
    if tg.get("TargetType") == "lambda":
        return  # no port: TG_PROTOCOL and the listener findings say enough
    ports = sorted({d["Target"].get("Port") or tg.get("Port") for d in targets}
                   or {tg.get("Port")}, key=lambda p: p or 0)
    wrong = [p for p in ports if p != APP_PORT]
    if wrong:
        where = (f"target group {tg['TargetGroupName']} sends traffic to port(s) "
                 f"{', '.join(str(p) for p in wrong)}")
        case.add(ERROR, "TG_PORT_MISMATCH",
                 f"{where}, but the app listens on {APP_PORT} (the load balancer answers "
                 "502 or the targets are unhealthy)",
                 f"create a target group on port {APP_PORT} (HTTP) and register the "
                 f"instances on {APP_PORT}; the listener stays on {LISTENER_PORT}")


def check_health_check_settings(case: Case, tg: dict) -> None:
    name = tg["TargetGroupName"]
    if tg.get("HealthCheckEnabled") is False:
        return  # reported per target as Target.HealthCheckDisabled by AWS
    hc_port = str(tg.get("HealthCheckPort", "traffic-port"))
    if hc_port not in ("traffic-port", str(APP_PORT)):
        case.add(ERROR, "HEALTH_CHECK_PORT",
                 f"target group {name} health-checks port {hc_port}, not the app's "
                 f"{APP_PORT}",
                 "set the health check port to 'traffic port'")
    matcher = str(tg.get("Matcher", {}).get("HttpCode", "200"))
    if not success_codes_include(matcher, 200):
        case.add(WARNING, "HEALTH_CHECK_MATCHER",
                 f"target group {name} expects health check codes {matcher}, but the "
                 "app's health check answers 200",
                 "set the success codes to 200")
    path = tg.get("HealthCheckPath") or "/"
    if path not in (HEALTH_CHECK_PATH, "/"):
        # only AWS's Target.ResponseCodeMismatch (or the probe) can tell if it answers 200
        case.add(INFO, "HEALTH_CHECK_PATH",
                 f"target group {name} health-checks GET {path}; this project's app "
                 f"answers 200 on {HEALTH_CHECK_PATH} and /")


def check_target_health(case: Case, tg: dict, targets: list[dict]) -> None:
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
        case.add(reason.severity, reason.code, message, reason.fix)
    if healthy:
        case.add(INFO, "TARGETS_HEALTHY",
                 f"{healthy} of {len(targets)} target(s) in {tg['TargetGroupName']} "
                 "are healthy")


def check_boot_logs(case: Case, tg: dict, targets: list[dict]) -> None:
    """An unhealthy instance whose console shows that its boot script failed: quote the
    script's FAILED line (infra/aws/templates/user_data.sh) and what it printed just
    before. GetConsoleOutput is read for unhealthy instance targets only."""
    if tg.get("TargetType", "instance") != "instance":
        return
    for desc in targets:
        if desc.get("TargetHealth", {}).get("State") != "unhealthy":
            continue
        iid = desc["Target"]["Id"]
        log = console_output.boot_log(case.ec2, {"InstanceId": iid})
        if log.error:
            case.add(INFO, "BOOT_LOG_UNREADABLE",
                     f"could not read instance {iid}'s console output ({log.error})")
            continue
        if not log.failed:
            continue
        before = log.before_failure(3)
        case.add(ERROR, "BOOT_SCRIPT_FAILED",
                 f"instance {iid}'s boot script (user data) failed, so the app never "
                 f"started: its console says {log.verdict!r}"
                 + (f", after {' / '.join(repr(b) for b in before)}" if before else ""),
                 f"`make logs` shows its console (aws ec2 get-console-output --instance-id "
                 f"{iid}); fix what it names, then launch the instance again: user data "
                 "runs on the first boot only")
