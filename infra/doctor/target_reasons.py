"""AWS's target health reason codes, in plain words, with the seed FAQ's advice.

DescribeTargetHealth says *that* a target is unhealthy with a reason code such as
`Target.Timeout`; students read it as "OutOfService" (FAQ 4). Each code maps to the doctor
finding code it raises, its severity, what it means and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import APP_PORT, HEALTH_CHECK_PATH
from infra.doctor.findings import ERROR, WARNING

RUN_THE_APP = (
    f"ssh into the instance and start the app listening on every interface on port {APP_PORT}: "
    f"`python -m app --host 0.0.0.0 --port {APP_PORT}` (or `flask run --host 0.0.0.0 --port "
    f"{APP_PORT}`), not on 127.0.0.1 (FAQ 1 and 4)"
)


@dataclass(frozen=True)
class Reason:
    code: str  # the doctor finding code
    severity: str
    meaning: str  # plain words
    fix: str


REASONS: dict[str, Reason] = {
    "Target.Timeout": Reason(
        "TARGET_TIMEOUT",
        ERROR,
        "the load balancer's health check got no answer in time: nothing listens on the "
        "instance's port, the app listens on 127.0.0.1 only, or a security group drops it",
        RUN_THE_APP + "; and let the instances' security group accept the load balancer's "
        f"security group on {APP_PORT}",
    ),
    "Target.ResponseCodeMismatch": Reason(
        "HEALTH_CHECK_NOT_200",
        ERROR,
        "the app answers the health check, but not with 200",
        f"make the health check path return 200: set the target group's health check path "
        f"to {HEALTH_CHECK_PATH} (or /), which the app answers with 200",
    ),
    "Target.FailedHealthChecks": Reason(
        "TARGET_FAILED_HEALTH_CHECKS",
        ERROR,
        "the health check connection failed or the answer was malformed (connection "
        "refused or reset: the app is not running on that port)",
        RUN_THE_APP,
    ),
    "Target.NotRegistered": Reason(
        "TARGET_NOT_REGISTERED",
        ERROR,
        "the instance is not registered in the target group",
        "register both instances in the target group (Target groups > Register targets, "
        f"port {APP_PORT})",
    ),
    "Target.NotInUse": Reason(
        "TARGET_NOT_IN_USE",
        ERROR,
        "the target group is not used by the load balancer, or the instance is in an "
        "Availability Zone the load balancer is not enabled for",
        "make the listener forward to this target group, and enable the load balancer in "
        "every Availability Zone (subnet) that holds an instance",
    ),
    "Target.InvalidState": Reason(
        "TARGET_INVALID_STATE",
        ERROR,
        "the instance is stopped or terminated",
        "start the instance (then start the app on it again), or register a running one",
    ),
    "Target.IpUnusable": Reason(
        "TARGET_IP_UNUSABLE",
        ERROR,
        "the target's IP address cannot be used (it belongs to a load balancer)",
        "register the EC2 instances themselves, not load balancer addresses",
    ),
    "Target.HealthCheckDisabled": Reason(
        "TARGET_HEALTH_CHECK_DISABLED",
        WARNING,
        "health checks are disabled for the target group, so AWS cannot tell whether the "
        "app answers",
        f"enable the target group's health check on {HEALTH_CHECK_PATH}",
    ),
    "Target.DeregistrationInProgress": Reason(
        "TARGET_DRAINING",
        WARNING,
        "the instance is being deregistered (draining) and gets no new requests",
        "register it again if that was not meant, or wait for the deregistration to finish",
    ),
    "Elb.RegistrationInProgress": Reason(
        "TARGET_REGISTRATION_IN_PROGRESS",
        WARNING,
        "the instance is still being registered",
        "wait a minute and run the doctor again; do not grade yet",
    ),
    "Elb.InitialHealthChecking": Reason(
        "TARGET_INITIAL_HEALTH_CHECKING",
        WARNING,
        "the first health checks are still running",
        "wait a minute and run the doctor again; do not grade yet",
    ),
    "Elb.InternalError": Reason(
        "TARGET_ELB_INTERNAL_ERROR",
        ERROR,
        "the health checks failed because of an internal load balancer error",
        "wait a few minutes and check again; if it stays, recreate the target group",
    ),
}

UNKNOWN = Reason(
    "TARGET_UNHEALTHY",
    ERROR,
    "the instance is not healthy",
    RUN_THE_APP,
)

# Targets in these states take traffic (or will) and need no finding.
SERVING_STATES = frozenset({"healthy"})


def reason_for(reason_code: str | None) -> Reason:
    return REASONS.get(reason_code or "", UNKNOWN)


def plain_words(target_id: str, port, state: str, reason_code: str | None,
                description: str | None) -> str:
    """One line a student can read: `i-0abc:5000 unhealthy (Target.Timeout): ...; fix: ...`."""
    where = f"{target_id}:{port}" if port else target_id
    if state in SERVING_STATES:
        return f"{where} {state}: takes traffic"
    reason = reason_for(reason_code)
    label = f"{state} ({reason_code})" if reason_code else state
    detail = f" AWS says: {description}." if description else ""
    return f"{where} {label}: {reason.meaning}.{detail} Fix: {reason.fix}"

