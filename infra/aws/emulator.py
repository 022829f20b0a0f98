"""Aiming boto3 at a local emulator (moto server, LocalStack) with fake credentials.

Everything that talks to a control plane on this machine builds its clients here: the
testbed, the bench, and the grader's `--aws` for a local address. The keys are fake and
SEEDLB_LOOPBACK_ONLY=1 is set, so nothing from the user's profile reaches even the emulator
and no request can leave for AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.session

from infra.aws.clients import Clients, Target
from infra.config import is_loopback_host
from infra.errors import UserError

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


def emulator_clients(endpoint: str, region: str) -> Clients:
    """Clients for a local emulator, from its endpoint and region alone: fake keys, nothing
    from the environment or the user's AWS config, and no os.environ swapped (so any
    thread may build them, and deploy needs nothing around it)."""
    if not is_loopback_host(urlparse(endpoint).hostname):
        raise UserError(f"the emulator's endpoint is {endpoint}: refusing to send any request "
                        "off this machine (a local emulator listens on 127.0.0.1)")
    return Clients(Target(region=region, endpoint_url=endpoint), fake_session(region))


# botocore's settings that name the user's profile and its files: none, for an emulator.
_NO_PROFILE = {"profile": (None, [], None, None),
               "config_file": (None, [], os.devnull, None),
               "credentials_file": (None, [], os.devnull, None)}


def botocore_session_without_profile() -> botocore.session.Session:
    """A botocore session that reads no profile and no AWS config file: AWS_PROFILE (even
    one that does not exist) has no say in it."""
    return botocore.session.Session(session_vars=_NO_PROFILE)


def fake_session(region: str) -> boto3.session.Session:
    """Explicit fake credentials, and no profile: nothing from the user's AWS config ever
    reaches even the emulator."""
    fake = FAKE_CREDENTIALS
    return boto3.session.Session(
        region_name=region,
        aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=fake["AWS_SESSION_TOKEN"],
        botocore_session=botocore_session_without_profile(),
    )


# --- an emulator that does not answer -------------------------------------------------------
# moto_server listens about a second after it starts (a recipe may start it in the background
# and deploy at once): while an emulator's process on this machine names the port, a refused
# connection is tried again for up to STARTING_WAIT; otherwise nothing is starting, and
# ANSWER_WAIT is only a grace for an emulator found no other way (a container, macOS).
ANSWER_WAIT = 0.5
STARTING_WAIT = 15.0
_EMULATOR_PROGRAMS = ("moto_server", "moto.server", "infra.local.motohook", "localstack")


def not_answering(endpoint: str) -> str:
    """The one line for an emulator endpoint where nothing answers."""
    port = urlparse(endpoint).port or 80
    return (f"no emulator answers at {endpoint}: start it "
            f"(`.venv/bin/moto_server -H 127.0.0.1 -p {port} &` or `make local-up`)")


def starting_on(port: int) -> str:
    """An emulator process on this machine whose command line names `port`, as
    "moto_server (pid 123)"; '' if none (or no /proc to look in)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        program = next((p for p in _EMULATOR_PROGRAMS if any(p in a for a in argv[:3])), "")
        if program and str(port) in argv:
            return f"{program} (pid {cmdline.parent.name})"
    return ""


def answers(address: tuple[str, int], timeout: float = 1.0) -> bool | None:
    """True: it accepts a connection; False: refused; None: any other failure."""
    try:
        socket.create_connection(address, timeout=timeout).close()
        return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return None


def wait_until_answers(endpoint: str, wait: float = ANSWER_WAIT,
                       say: Callable[[str], None] | None = None) -> bool:
    """For an emulator endpoint on this machine: True once something accepts connections
    there, within `wait` seconds (STARTING_WAIT while an emulator process for that port is
    starting). False at once for an endpoint elsewhere or one that fails otherwise."""
    address = Target(None, endpoint).endpoint_address
    if not is_loopback_host(address[0]):
        return False
    deadline = time.monotonic() + wait
    extended = False
    while True:
        state = answers(address)
        if state is not False:
            return bool(state)
        if not extended and (starting := starting_on(address[1])):
            extended = True
            deadline = max(deadline, time.monotonic() + STARTING_WAIT)
            if say:
                say(f"{starting} does not listen at {endpoint} yet: waiting up to "
                    f"{STARTING_WAIT:g} s for it to start")
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # a local process binding its port: no AWS waiter covers it


# --- the emulator a stack lives in, from its state file -------------------------------------
@dataclass(frozen=True)
class Deployed:
    """A stack that deploy put into an emulator, as its state file says."""

    stack: str
    endpoint: str
    region: str
    state_file: Path
    lb: str = ""  # the local testbed's load balancer (host:port), if it is one
    why: str = ""  # one line for the user when the stack was not the one they named


def _emulator_states(state_dir: str | Path) -> dict[str, tuple[Path, dict]]:
    found = {}
    for path in sorted(Path(state_dir).glob("*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("emulator") and state.get("endpoint_url"):
            found[str(state.get("stack") or path.stem)] = (path, state)
    return found


def _deployed(stack: str, path: Path, state: dict, why: str = "") -> Deployed:
    lb = (state.get("grade_endpoints") or {}).get("lb") or ""
    return Deployed(stack, state["endpoint_url"], state.get("region") or "us-east-1", path,
                    lb, why)


def _no_credentials() -> bool:
    """No AWS credentials in the environment or the AWS config files. An instance role is
    not asked for: that would be a request off this machine."""
    import botocore.credentials
    import botocore.session

    try:
        resolver = botocore.credentials.create_credential_resolver(
            botocore.session.get_session())
        for provider in ("iam-role", "container-role"):
            resolver.remove(provider)
        return resolver.load_credentials() is None
    except Exception:  # noqa: BLE001 - a broken profile: the user meant AWS, and hears of it
        return False


def deployed_in_emulator(stack: str, state_dir: str | Path, *, lb: str | None = None,
                         default_stack: str = "", backend: str = "aws") -> Deployed | None:
    """Where status, doctor and destroy find a stack that deploy (or the local testbed) put
    into an emulator, when the environment names no endpoint (AWS_ENDPOINT_URL unset):

    - `lb`: the stack whose state names that load balancer (its DNS name, or the local
      testbed's 127.0.0.1:PORT);
    - else the stack's own state file, if it says emulator;
    - else, for the default stack without a state file and without AWS credentials, the one
      stack whose emulator answers now (a running `make local-up`).

    None: use AWS (or AWS_ENDPOINT_URL, with the user's keys) as always."""
    if backend != "aws" or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    states = _emulator_states(state_dir)
    if lb:
        for name, (path, state) in states.items():
            local_lb = (state.get("grade_endpoints") or {}).get("lb")
            if lb in (state.get("lb_dns"), local_lb):
                return _deployed(name, path, state)
        return None
    if stack in states:
        return _deployed(stack, *states[stack])
    if stack != default_stack or (Path(state_dir) / f"{stack}.json").exists() \
            or not states or not _no_credentials():
        return None
    live = {n: s for n, s in states.items()
            if answers(Target(None, s[1]["endpoint_url"]).endpoint_address, 0.5)}
    if len(live) > 1:
        raise UserError(f"no AWS credentials, and stacks in {len(live)} emulators here: name "
                        "one, " + ", ".join(f"`make status STACK={n}`" for n in live))
    for name, (path, state) in live.items():
        return _deployed(name, path, state, why=(
            f"no AWS credentials and no stack {stack} here: stack {name}, in the emulator at "
            f"{state['endpoint_url']} ({path})"))
    return None


def deployed_clients(deployed: Deployed) -> Clients:
    """Fake-credential clients for the emulator the stack is in, once it answers; first,
    on stderr, why this emulator when the state file chose it over what was asked."""
    if deployed.why:
        print(deployed.why, file=sys.stderr)
    if not wait_until_answers(deployed.endpoint):
        raise UserError(
            f"{not_answering(deployed.endpoint)}. {deployed.state_file} says stack "
            f"{deployed.stack} was deployed there; a stopped moto server took the stack with "
            f"it (`rm {deployed.state_file}` forgets it)")
    return emulator_clients(deployed.endpoint, deployed.region)
