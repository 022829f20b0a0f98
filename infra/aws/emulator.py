"""Aiming boto3 at a local emulator (moto server, LocalStack) with fake credentials.

Everything that talks to a control plane on this machine builds its clients here: the
testbed, the bench, and the grader's `--aws` for a local address. The keys are fake and
SEEDLB_LOOPBACK_ONLY=1 is set, so nothing from the user's profile reaches even the emulator
and no request can leave for AWS.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator

import boto3

from infra.aws.clients import Clients, resolve_target

# Fake credentials and the loopback guard for everything that talks to the local control plane.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SEEDLB_LOOPBACK_ONLY": "1",
}


@contextlib.contextmanager
def patched_environ(values: dict[str, str], remove: Iterable[str] = ()) -> Iterator[None]:
    """Set `values` (and unset `remove`) in os.environ, and put every key back as it was.

    boto3 reads AWS_ENDPOINT_URL and the credentials from the environment, so this is how a
    caller aims the standard credential chain at the emulator without leaking it afterwards.
    """
    saved = {key: os.environ.get(key) for key in [*values, *remove]}
    for key in remove:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# os.environ is one per process: two threads swapping it at once would restore each other's
# values and leave the emulator's endpoint set for good.
_ENVIRONMENT_LOCK = threading.RLock()


@contextlib.contextmanager
def emulator_environment(endpoint: str, region: str) -> Iterator[None]:
    """AWS_ENDPOINT_URL at the moto server, fake credentials, loopback only; restored after,
    so the caller's process (a test session, the bench) is left as it was."""
    wanted = dict(FAKE_CREDENTIALS)
    wanted.update(AWS_ENDPOINT_URL=endpoint, AWS_REGION=region, AWS_DEFAULT_REGION=region)
    with _ENVIRONMENT_LOCK, patched_environ(wanted, remove=("AWS_PROFILE",)):
        yield


def emulator_clients(endpoint: str, region: str) -> Clients:
    """Clients for the local moto server, resolved the standard way (AWS_ENDPOINT_URL)."""
    with emulator_environment(endpoint, region):
        clients = Clients(resolve_target("aws", region))
    clients.session = fake_session(region)
    return clients


def fake_session(region: str) -> boto3.session.Session:
    """Explicit fake credentials: nothing from the user's profile ever reaches even the emulator."""
    fake = FAKE_CREDENTIALS
    return boto3.session.Session(
        region_name=region,
        aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=fake["AWS_SESSION_TOKEN"],
    )
