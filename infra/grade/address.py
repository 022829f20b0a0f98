"""What the user typed as a load balancer or instance address, made into host and port.

The real grader takes the bare DNS name of the load balancer and speaks plain HTTP on
port 80 (the seed's FAQ 3: with `http://` or a port in the address it got a 501). So we
accept every spelling people paste, say what we changed, and warn where the real grader
would not do what we do.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from infra.config import APP_PORT, LISTENER_PORT
from infra.errors import UserError
from infra.grade.display import shown

ELB_SUFFIX = ".elb.amazonaws.com"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}/"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class Address:
    """A parsed address: the endpoint, plus what was normalized and what to warn about."""

    endpoint: Endpoint
    given: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def is_elb_name(self) -> bool:
        return self.host.lower().endswith(ELB_SUFFIX)


def quoted(text: str, limit: int = 80) -> str:
    """What the user typed, for a message: escaped, cut, in quotes."""
    return f"'{shown(text, limit)}'"


def _split(text: str, default_port: int, what: str) -> tuple[str, str, int, bool, str]:
    """-> (scheme, host, port, port_given, path) or UserError."""
    raw = text.strip()
    if not raw:
        example = f"my-lb-123.us-east-1{ELB_SUFFIX}"
        raise UserError(f"empty {what}: give a DNS name or IP, e.g. {example}")
    netloc_end = len(re.split(r"[/?#]", raw.split("://", 1)[-1], maxsplit=1)[0])
    if "@" in raw.split("://", 1)[-1][:netloc_end]:
        # user:pass@host, or two addresses glued together: never echo the part before '@'
        rest = raw.rsplit("@", 1)[1]
        raise UserError(
            f"{what} '***@{shown(rest, 60)}' has '@' in it: what comes before it is a user "
            "name and password, or another address (not shown). The grader sends no "
            "credentials and takes one bare DNS name: give just the name after '@', if "
            "that is the load balancer")
    if any(c.isspace() for c in raw):
        raise UserError(f"{what} {quoted(text)} contains spaces: give one DNS name or IP")
    if not raw.isprintable():
        raise UserError(f"{what} {quoted(text)} contains control characters: type or paste "
                        "the DNS name again")
    scheme = ""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", raw)
    if match:
        scheme = match.group(1).lower()
        if scheme not in ("http", "https"):
            raise UserError(f"{what} {quoted(text)}: scheme {shown(scheme, 20)}:// is not "
                            "HTTP; give the DNS name")
        raw = raw[match.end():]
    try:
        parts = urlsplit("//" + raw)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise UserError(f"{what} {quoted(text)}: bad port ({shown(str(exc), 60)}); use host "
                        "or host:port, the port a number from 1 to 65535") from None
    if not host:
        raise UserError(f"{what} {quoted(text)} has no host name; give a DNS name or IP")
    if port is None and parts.netloc.endswith(":"):
        raise UserError(f"{what} {quoted(text)} ends in ':' with no port: give host "
                        f"(port {default_port}) or host:port")
    if port == 0:
        raise UserError(f"{what} {quoted(text)}: port 0 is not a port one can connect to; "
                        f"give host (port {default_port}) or host:port, from 1 to 65535")
    bare = host.rstrip(".")
    if re.fullmatch(r"[0-9.]+", bare) and not _valid_host(bare):
        raise UserError(f"{what} {quoted(text)}: {shown(bare, 40)} is not a valid IPv4 address "
                        "(four numbers from 0 to 255, like 54.12.0.7), and a name cannot be "
                        "all digits: give the load balancer's DNS name")
    if not _valid_host(host):
        named = "" if host == raw.lower() else f": {quoted(host, 60)}"
        raise UserError(f"{what} {quoted(text)}{named} is not a DNS name or IP address (a "
                        "name has letters, digits, '-' and dots, at most 253 characters)")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return scheme, host.lower(), port if port is not None else default_port, port is not None, path


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        if re.fullmatch(r"[0-9.]+", host.rstrip(".")):
            return False  # a dotted quad that is not IPv4 (999.999.999.999) is no name either
        return bool(_HOSTNAME_RE.match(host)) and len(host) <= 253


def parse_address(text: str) -> Address:
    """The load balancer's address as the grader will use it: host, and port 80 by default."""
    scheme, host, port, port_given, path = _split(text, LISTENER_PORT, "address")
    address = Address(Endpoint(host.rstrip("."), port), given=text)
    notes, warnings = address.notes, address.warnings
    if scheme == "http":
        notes.append(
            "removed 'http://': the grader takes the bare DNS name "
            "(FAQ 3: with http:// in the address it got 501 Not Implemented)"
        )
    elif scheme == "https":
        notes.append(
            "'https://' given, but the assignment's listener is plain HTTP and the grader "
            f"speaks plain HTTP: checking http://{address.endpoint.netloc}/ instead"
        )
    if path not in ("", "/"):
        notes.append(f"ignored the path {quoted(path, 60)}: the grader only uses '/'")
    elif path == "/":
        notes.append("removed the trailing '/'")
    if port_given and port == LISTENER_PORT:
        notes.append(
            f"removed ':{LISTENER_PORT}': it is the default, and the grader's address "
            "has no port (FAQ 3)"
        )
    elif port_given and address.is_elb_name:
        warnings.append(
            f"port {port} on a load balancer name: the real grader connects to port "
            f"{LISTENER_PORT} and never adds a port (FAQ 3); the listener must be on "
            f"{LISTENER_PORT}"
        )
    if host.lower().startswith("internal-") and address.is_elb_name:
        warnings.append(
            "the name starts with 'internal-': this is an internal load balancer, which the "
            "grader cannot reach over the internet; recreate it with scheme internet-facing"
        )
    return address


def parse_instances(text: str, default_port: int = APP_PORT) -> list[Endpoint]:
    """`ip1,ip2` (each on :5000) or `host:port,...` -> endpoints, in order, without repeats."""
    endpoints: list[Endpoint] = []
    for item in text.split(","):
        if not item.strip():
            continue
        _, host, port, _, _ = _split(item, default_port, "instance address")
        endpoint = Endpoint(host, port)
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    if not endpoints:
        raise UserError(f"--instances {quoted(text)} names no instance; use ip1,ip2 or "
                        "host:port,...")
    return endpoints


@dataclass
class StateMatch:
    path: Path
    instances: list[Endpoint]
    skipped: list[str]  # instances listed without a reachable address
    state: dict = field(default_factory=dict)  # the whole file: lb_dns, endpoint_url, region


def instances_from_state(
    address: Address, state_dir: str | Path, stack: str | None = None
) -> StateMatch | None:
    """The instances of the stack whose state file names this load balancer, else None.

    A file matches only when its `lb_dns` is this address (then each instance's public IP on
    the app port) or its `grade_endpoints.lb` is (then `grade_endpoints.instances`). We never
    guess addresses: no match, no instances.
    """
    for path, state in _states(state_dir, stack):
        match = _match_state(address, state, path)
        if match is not None:
            return match
    return None


def _states(state_dir: str | Path, stack: str | None = None):
    """(path, state) of each readable state file, the named stack's first."""
    directory = Path(state_dir)
    if not directory.is_dir():
        return
    files = sorted(directory.glob("*.json"))
    if stack:  # the named stack's file first, when several stacks are deployed
        files.sort(key=lambda p: p.stem != stack)
    for path in files:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict):
            yield path, state


# Where `make local-up` serves its load balancer (infra/local's DEFAULT_LB_PORT; the grader's
# core does not import the testbed, tests/grade checks the two agree).
LOCAL_LB = "127.0.0.1:8080"


@dataclass
class EmulatorName:
    """An address that only an emulator's stack knows: nothing on the internet answers it."""

    host: str
    path: Path
    endpoint_url: str
    local_lb: str  # the running local testbed's load balancer, or LOCAL_LB
    running: bool  # whether a local testbed's state names its load balancer

    def message(self) -> str:
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        then = ("the local testbed runs here: " if self.running else
                "to grade on this machine: make local-up, then ")
        return (f"{shown(self.host)} exists only in the emulator{at} ({self.path}): it is "
                f"not on the internet, so nothing was sent to it; {then}make grade "
                f"LB={self.local_lb}")


def emulator_name(address: Address, instances: list[Endpoint], state_dir: str | Path,
                  stack: str | None = None) -> EmulatorName | None:
    """The first of `address` and `instances` that an emulator's state file made up (its load
    balancer's DNS name, its instances' public and private IPs), else None. moto hands out
    real-looking public IPs (54.214.x.x): connecting to one would reach a stranger."""
    states = list(_states(state_dir, stack))
    running = next((s["grade_endpoints"]["lb"] for _, s in states
                    if isinstance(s.get("grade_endpoints"), dict)
                    and isinstance(s["grade_endpoints"].get("lb"), str)), None)
    hosts = [address.host, *(i.host for i in instances)]
    for path, state in states:
        if state.get("emulator") is not True:
            continue
        made = set()
        if isinstance(state.get("lb_dns"), str):
            made.add(state["lb_dns"].strip().rstrip(".").lower())
        for inst in state.get("instances") or []:
            if isinstance(inst, dict):
                made |= {str(inst[k]).lower() for k in ("public_ip", "private_ip")
                         if inst.get(k)}
        for host in hosts:
            if host.rstrip(".").lower() in made and not _loopback(host):
                return EmulatorName(host, path, str(state.get("endpoint_url") or ""),
                                    shown(running or LOCAL_LB, 60), running is not None)
    return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _same(address: Address, text: object, default_port: int) -> bool:
    if not isinstance(text, str) or not text.strip():
        return False
    try:
        scheme, host, port, _, _ = _split(text, default_port, "state address")
    except UserError:
        return False
    return Endpoint(host.rstrip("."), port) == address.endpoint


def _match_state(address: Address, state: dict, path: Path) -> StateMatch | None:
    endpoints = state.get("grade_endpoints")
    if isinstance(endpoints, dict) and _same(address, endpoints.get("lb"), LISTENER_PORT):
        listed = [i for i in endpoints.get("instances") or [] if isinstance(i, str)]
        instances = parse_instances(",".join(listed)) if listed else []
        return StateMatch(path, instances, [], state)
    listener_port = state.get("listener_port") or LISTENER_PORT
    if _same(address, state.get("lb_dns"), int(listener_port)):
        app_port = int(state.get("app_port") or APP_PORT)
        instances, skipped = [], []
        for inst in state.get("instances") or []:
            if not isinstance(inst, dict):
                continue
            ip = inst.get("public_ip")
            if ip:
                instances.append(Endpoint(str(ip), app_port))
            else:
                skipped.append(str(inst.get("id") or "?"))
        return StateMatch(path, instances, skipped, state)
    return None
