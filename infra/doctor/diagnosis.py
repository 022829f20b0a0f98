"""The doctor's diagnosis: read the AWS side and name what would make the grader fail.

It follows a request's path from the internet to the app (infra/doctor/examination.py): the load
balancer (scheme, its security group, its subnets' routes), the listener on 80, the target
group (port, health check), each target's health (AWS's reason codes in plain words,
infra/doctor/target_reasons.py), and the instances (running, their security group, their
Availability Zone). It only reads; it changes nothing.
It works on any backend, and on stacks it did not create: find the load balancer by name,
DNS name or ARN (--lb), or by this project's tags (--stack).

Other modules use `diagnose(clients, stack, lb)` and `target_health_lines(clients, lb_dns)`.
"""

from __future__ import annotations

import contextlib
import socket

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from infra.aws import failures, lb_lookup
from infra.aws.clients import Clients
from infra.aws.preflight import emulator_answers
from infra.config import APP_PORT, is_loopback_host, loopback_only
from infra.doctor.examination import Examination, load_balancer_target_groups, target_health
from infra.doctor.findings import Finding
from infra.doctor.target_reasons import plain_words
from infra.errors import UserError

__all__ = ["Finding", "diagnose", "target_health_lines"]


def diagnose(clients: Clients, stack: str | None = None, lb: str | None = None, *,
             probe: bool | None = None) -> list[Finding]:
    """Every finding for one load balancer (found by `lb`, else by `stack`'s tags).

    `probe`: also GET each instance's health check path over HTTP. None means: only
    against real AWS, never against an emulator or with SEEDLB_LOOPBACK_ONLY=1.
    Raises UserError when the load balancer cannot be found.
    """
    if probe is None:
        probe = not clients.target.is_emulator and not loopback_only()
    _emulator_must_answer(clients)
    with _aws_errors_as_user_errors(clients):
        found, how = lb_lookup.find(clients, stack=stack, lb=lb)
        return Examination(clients, found, how, stack=None if lb else stack, probe=probe).run()


def target_health_lines(clients: Clients, lb_dns: str) -> list[str]:
    """Plain-words health of every target behind the load balancer with this DNS name.

    For the grader, to explain a 502/503. Never raises for a missing load balancer or an
    unreachable API: it returns one line that says so instead.
    """
    try:
        _emulator_must_answer(clients)
        with _aws_errors_as_user_errors(clients):
            lb = lb_lookup.by_dns(clients, lb_dns)
            groups = load_balancer_target_groups(clients, lb)
            if not groups:
                return [f"{lb['LoadBalancerName']}: no target group is attached "
                        "(the listener does not forward anywhere)"]
            lines = []
            for tg in groups:
                targets = target_health(clients, tg["TargetGroupArn"])
                if not targets:
                    lines.append(f"target group {tg['TargetGroupName']}: no targets registered; "
                                 "register both instances on port "
                                 f"{APP_PORT}")
                for desc in targets:
                    lines.append(f"target group {tg['TargetGroupName']}: " + _plain(desc))
            return lines
    except UserError as exc:
        return [f"target health unavailable: {exc}"]


def _emulator_must_answer(clients: Clients) -> None:
    """A stopped emulator would cost botocore's ten retries (half a minute): ask once."""
    if not clients.target.is_emulator:
        return
    emulator_answers(clients)  # one on this machine: "start it", within a second
    if is_loopback_host(clients.target.endpoint_address[0]):
        return  # it answers: emulator_answers just connected to it
    try:
        socket.create_connection(clients.target.endpoint_address, timeout=2).close()
    except OSError as exc:
        raise UserError(f"cannot reach the AWS API at {clients.target.endpoint_url} "
                        f"({exc.strerror or exc}): is the emulator (moto server, LocalStack) "
                        "running, and is AWS_ENDPOINT_URL right?") from exc


@contextlib.contextmanager
def _aws_errors_as_user_errors(clients: Clients):
    """Missing or rejected credentials, an unreachable endpoint, a denied call: one clear
    line instead of a traceback. Any other AWS error is a bug here and propagates."""
    where = clients.target.describe()
    try:
        yield
    except NoCredentialsError as exc:
        raise UserError(f"no AWS credentials ({where}): run `aws configure` or set "
                        "AWS_PROFILE; for a local emulator set AWS_ENDPOINT_URL") from exc
    except EndpointConnectionError as exc:
        raise UserError(f"cannot reach the AWS API ({where}): check the network and "
                        "--region, or, for an emulator, that it runs at AWS_ENDPOINT_URL") from exc
    except BotoCoreError as exc:
        raise UserError(f"AWS API call failed ({where}): {exc}") from exc
    except ClientError as exc:
        code = failures.code_of(exc)
        if failures.is_denied(exc) or failures.is_service_missing(exc):  # LocalStack: no ELBv2
            # Names the action, as deploy does: "AWS denied elasticloadbalancing:DescribeRules"
            raise UserError(failures.explain(exc, f"reading the stack ({where}; the doctor "
                                                  "only reads)")) from exc
        if code in failures.REJECTED_CREDENTIAL_CODES:
            raise UserError(f"AWS rejected the credentials ({code}, {where}): refresh them "
                            "(`aws sso login`, `aws configure`) or use another AWS_PROFILE"
                            ) from exc
        raise


def _plain(desc: dict) -> str:
    target, health = desc["Target"], desc.get("TargetHealth", {})
    return plain_words(target["Id"], target.get("Port"), health.get("State", "unknown"),
                       health.get("Reason"), health.get("Description"))
