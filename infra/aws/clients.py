"""boto3 clients for real AWS, LocalStack or a moto server, chosen by configuration only.

- backend "aws": boto3's own credential chain and environment (AWS_PROFILE, AWS_REGION,
  AWS_ENDPOINT_URL, ...). Pointing AWS_ENDPOINT_URL at a moto server needs nothing else.
- backend "localstack": the endpoint comes from localstack-client (LOCALSTACK_HOST).
- moto in process (`mock_aws`) needs no branch at all: it intercepts the same clients.

With SEEDLB_LOOPBACK_ONLY=1 (set by the tests and the local testbed) any endpoint that is
not on 127.0.0.0/8 or localhost is refused before a single request is sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from infra.aws import failures
from infra.config import LOOPBACK_ONLY_ENV, is_loopback_host, loopback_only
from infra.errors import UserError

# Throttling and transient errors (5xx, dropped connections) are retried by botocore itself,
# with backoff: `standard` is the mode the AWS SDKs reference guide recommends ("adaptive" is
# for special cases: it also slows the client down after each throttle, see
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=60,
)
# The first call of every command (STS GetCallerIdentity) says within 5 s that AWS cannot be
# reached: two attempts of at most 2 s each, and standard mode's first backoff (at most 1 s).
FIRST_CALL_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=2,
    read_timeout=2,
)
# An emulator on this machine that accepted the connection is alive but may be slow to answer
# its first call: moto and LocalStack load a service's code on first use (measured: LocalStack
# 4.13's first STS call 4.5 s; moto's first EC2 call 5.7 s on 2 busy cores). AWS's two 2 s
# reads turned that into "cannot reach" under load. Two reads of 6 s instead (the second
# finds the service loaded; a throttle is still retried): an answer within about 13 s from
# one that accepts and never answers; a stopped emulator refuses the connection at once.
EMULATOR_FIRST_CALL_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=2,
    read_timeout=6,
)

@dataclass(frozen=True)
class Target:
    """Where the AWS API calls go."""

    region: str | None
    endpoint_url: str | None  # None: AWS itself
    backend: str = "aws"

    @property
    def is_emulator(self) -> bool:
        """True for moto and LocalStack: the endpoint is not an AWS host.

        Code that only makes sense on real AWS (the deployer's public IP, instance
        metadata) must check this and never run against an emulator.
        """
        if self.endpoint_url is None:
            return False
        host = urlparse(self.endpoint_url).hostname or ""
        return not host.endswith(".amazonaws.com")

    @property
    def endpoint_address(self) -> tuple[str, int] | None:
        """(host, port) that an emulator's endpoint URL names; None for AWS itself."""
        if self.endpoint_url is None:
            return None
        url = urlparse(self.endpoint_url)
        return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)

    def describe(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"{self.backend} backend, region {self.region or '(unset)'}, endpoint {where}"


def resolve_target(backend: str = "aws", region: str | None = None) -> Target:
    """Work out the endpoint and region from the backend name and the environment."""
    if backend == "localstack":
        from localstack_client.config import get_service_endpoint

        endpoint = get_service_endpoint("ec2")
    elif backend == "aws":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    else:
        raise UserError(f"unknown backend {backend!r}: use aws or localstack")
    try:  # reads ~/.aws/config (the profile, its region), builds no client
        session = boto3.session.Session()
    except BotoCoreError as exc:  # AWS_PROFILE naming no profile
        raise failures.as_user_error(exc, "reading the AWS configuration",
                                     exit_code=2) from None
    region = (region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or session.region_name)
    target = Target(region=region, endpoint_url=endpoint, backend=backend)
    _refuse_if_not_loopback(target)
    return target


def _refuse_if_not_loopback(target: Target) -> None:
    if not loopback_only():
        return
    host = urlparse(target.endpoint_url).hostname if target.endpoint_url else None
    if not is_loopback_host(host):
        raise UserError(
            f"{LOOPBACK_ONLY_ENV}=1 but the AWS endpoint is {target.endpoint_url or 'real AWS'}: "
            "refusing to send any request off this machine. Set AWS_ENDPOINT_URL to a local "
            "emulator (moto server or LocalStack on 127.0.0.1)."
        )


class Clients:
    """One boto3 session and the clients every module shares, all aimed at one Target.

    Building it makes no client and sends nothing: the first client is built on first use,
    after the CLI has checked the region and that credentials exist.
    """

    def __init__(self, target: Target, session: boto3.session.Session | None = None):
        self.target = target
        if session is None:  # the standard credential chain (an emulator passes its own)
            try:
                session = boto3.session.Session(region_name=target.region)
            except BotoCoreError as exc:  # AWS_PROFILE naming no profile
                raise failures.as_user_error(exc, "reading the AWS configuration",
                                             exit_code=2) from None
        self._session = session
        self._watch(session)

    @property
    def session(self) -> boto3.session.Session:
        return self._session

    @session.setter
    def session(self, session: boto3.session.Session) -> None:
        # The emulator's fake-credential session replaces this one: it gets the same hooks.
        self._session = session
        self._watch(session)

    @staticmethod
    def _watch(session: boto3.session.Session) -> None:
        # Clients copy the session's handlers when created: every failed call names its
        # IAM action (failures.stamp_iam_action).
        session.events.register("after-call", failures.stamp_iam_action,
                                unique_id="seedlb-iam-action")

    def client(self, service: str, config: Config = RETRY_CONFIG):
        if not self.target.region:
            # botocore's NoRegionError would be a traceback; this says how to set one.
            raise UserError(failures.no_region_line())
        return self.session.client(service, endpoint_url=self.target.endpoint_url,
                                   config=config)

    @cached_property
    def ec2(self):
        return self.client("ec2")

    @cached_property
    def elbv2(self):
        return self.client("elbv2")

    @cached_property
    def ssm(self):
        return self.client("ssm")

    @cached_property
    def sts(self):
        return self.client("sts")

    @cached_property
    def first_call_sts(self):
        """STS with tight timeouts and one retry: the call that finds out whether AWS
        answers at all, so that no network means an answer within 5 s, not 30. An emulator
        gets time to answer its first call (EMULATOR_FIRST_CALL_CONFIG)."""
        config = EMULATOR_FIRST_CALL_CONFIG if self.target.is_emulator else FIRST_CALL_CONFIG
        return self.client("sts", config)
