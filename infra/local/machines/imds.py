"""A booted instance's instance metadata service (IMDS), and the wheelhouse it installs from.

On EC2 the hypervisor answers at 169.254.169.254; no library plays that role on this
machine, so this is the project's own, and only as large as the boot needs. Inside the
machine's network namespace a DNAT rule sends 169.254.169.254:80 to this server, which
listens on the host's end of the machine's veth (machines/network.py): the machine reaches
it as an EC2 instance does, over its only link, with no route anywhere else.

What it serves, for the instance it was built for (`InstanceMetadata`, read from the
control plane), under `/latest/` and every dated version (cloud-init asks for
`2009-04-04` and `2021-03-23`):

- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600`: an IMDSv2
  session token (400 without a valid TTL, 403 with `X-Forwarded-For`, as EC2);
- `GET .../meta-data/...`: the categories cloud-init's Ec2 datasource crawls (a directory
  lists its entries, one a line, sub-directories with a trailing `/`): ami-id,
  ami-launch-index, ami-manifest-path, block-device-mapping/, hostname, instance-action,
  instance-id, instance-life-cycle, instance-type, local-hostname, local-ipv4, mac,
  network/interfaces/macs/<mac>/..., placement/, profile, public-hostname, public-ipv4,
  reservation-id, security-groups, services/;
- `GET .../user-data`: the user data exactly as RunInstances received it (404 without);
- `GET .../dynamic/instance-identity/document`: the identity document (JSON).

A GET needs a valid token (`X-aws-ec2-metadata-token`): 401 without one, as EC2 answers
when the instance's `HttpTokens` is `required` (deploy sets it so; moto's
MetadataOptions say which). cloud-init sends one because it identifies the platform as
AWS (machines/machine.py shows it the hypervisor UUID EC2 shows), and so does the boot
script. Every request is logged (`imds.log`, one JSON line each, with whether it carried a
token), so a test can show that every call of the boot carried one.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
MAX_TTL = 21600  # six hours, EC2's limit
# What GET / lists on EC2 (the dated versions cloud-init knows, and `latest`).
VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
            "2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01",
            "2012-01-12", "2014-02-25", "2014-11-05", "2015-10-20", "2016-04-19",
            "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17", "2018-09-24",
            "2019-10-01", "2020-10-27", "2021-01-03", "2021-03-23", "2021-07-15",
            "2022-09-24", "2024-04-11", "latest")


@dataclass(frozen=True)
class InstanceMetadata:
    """One instance as its IMDS describes it, from DescribeInstances (and the user data)."""

    instance_id: str
    image_id: str = ""
    instance_type: str = ""
    availability_zone: str = ""
    region: str = ""
    account_id: str = "123456789012"
    private_ip: str = ""
    public_ip: str = ""
    mac: str = "0e:00:00:00:00:01"
    subnet_id: str = ""
    vpc_id: str = ""
    reservation_id: str = ""
    launch_index: int = 0
    security_groups: tuple[tuple[str, str], ...] = ()  # (id, name)
    user_data: bytes | None = None
    http_tokens: str = "required"
    architecture: str = "x86_64"
    launched: str = ""

    @classmethod
    def from_instance(cls, instance: dict, *, region: str, user_data: bytes | None,
                      reservation_id: str = "", account_id: str = "") -> InstanceMetadata:
        eni = (instance.get("NetworkInterfaces") or [{}])[0]
        launched = instance.get("LaunchTime") or ""
        return cls(
            instance_id=instance["InstanceId"],
            image_id=instance.get("ImageId", ""),
            instance_type=instance.get("InstanceType", ""),
            availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
            region=region,
            account_id=account_id or eni.get("OwnerId") or cls.account_id,
            private_ip=instance.get("PrivateIpAddress", ""),
            public_ip=instance.get("PublicIpAddress", ""),
            mac=eni.get("MacAddress") or cls.mac,
            subnet_id=instance.get("SubnetId", ""),
            vpc_id=instance.get("VpcId", ""),
            reservation_id=reservation_id,
            launch_index=int(instance.get("AmiLaunchIndex", 0) or 0),
            security_groups=tuple((g.get("GroupId", ""), g.get("GroupName", ""))
                                  for g in instance.get("SecurityGroups", [])),
            user_data=user_data,
            http_tokens=(instance.get("MetadataOptions") or {}).get("HttpTokens", "required"),
            architecture=instance.get("Architecture", "x86_64"),
            launched=launched.isoformat() if hasattr(launched, "isoformat") else str(launched),
        )

    @classmethod
    def from_boot(cls, boot: dict) -> InstanceMetadata:
        """Back from a machine's boot.json (backend.py writes it): the instance as JSON has
        it, and the user data as DescribeInstanceAttribute returns it (base64)."""
        described = boot["instance"]
        value = boot.get("user_data_b64")
        return cls(**{**described,
                      "user_data": base64.b64decode(value) if value is not None else None,
                      "security_groups": tuple(tuple(g) for g in described["security_groups"])})

    @property
    def local_hostname(self) -> str:
        # EC2's resource name for a VPC instance: ip-10-0-1-23.ec2.internal (us-east-1).
        domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        return f"ip-{self.private_ip.replace('.', '-')}.{domain}" if self.private_ip else ""

    def meta_data(self) -> dict:
        """The meta-data tree: a dict is a directory, a str a file."""
        names = "\n".join(name for _, name in self.security_groups)
        eni = {
            "device-number": "0",
            "interface-id": f"eni-{self.instance_id[2:]}",
            "local-hostname": self.local_hostname,
            "local-ipv4s": self.private_ip,
            "mac": self.mac,
            "owner-id": self.account_id,
            "security-group-ids": "\n".join(gid for gid, _ in self.security_groups),
            "security-groups": names,
            "subnet-id": self.subnet_id,
            "vpc-id": self.vpc_id,
        }
        if self.public_ip:
            eni["public-ipv4s"] = self.public_ip
        tree = {
            "ami-id": self.image_id,
            "ami-launch-index": str(self.launch_index),
            "ami-manifest-path": "(unknown)",
            "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
            "hostname": self.local_hostname,
            "instance-action": "none",
            "instance-id": self.instance_id,
            "instance-life-cycle": "on-demand",
            "instance-type": self.instance_type,
            "local-hostname": self.local_hostname,
            "local-ipv4": self.private_ip,
            "mac": self.mac,
            "network": {"interfaces": {"macs": {self.mac: eni}}},
            "placement": {"availability-zone": self.availability_zone, "region": self.region},
            "profile": "default-hvm",
            "reservation-id": self.reservation_id,
            "security-groups": names,
            "services": {"domain": "amazonaws.com", "partition": "aws"},
        }
        if self.public_ip:
            tree["public-ipv4"] = self.public_ip
            dashed = self.public_ip.replace(".", "-")
            tree["public-hostname"] = f"ec2-{dashed}.compute-1.amazonaws.com"
        return tree

    def identity_document(self) -> dict:
        return {
            "accountId": self.account_id,
            "architecture": self.architecture,
            "availabilityZone": self.availability_zone,
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "pendingTime": self.launched,
            "privateIp": self.private_ip,
            "region": self.region,
            "version": "2017-09-30",
        }


@dataclass
class Tokens:
    """IMDSv2 session tokens and when each expires."""

    _expiry: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        with self._lock:
            self._expiry[token] = time.monotonic() + ttl
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry


def resolve(tree: dict, parts: list[str]):
    """The node at `parts` (None if there is none)."""
    node = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def listing(directory: dict) -> str:
    return "\n".join(f"{key}/" if isinstance(value, dict) else key
                     for key, value in directory.items())


class _Handler(BaseHTTPRequestHandler):
    server: MetadataServer
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # every request goes to the JSON log instead

    def _send(self, status: int, body: bytes | str = b"", content_type: str = "text/plain",
              headers: dict | None = None, auth: str = "") -> None:
        data = body.encode() if isinstance(body, str) else body
        # Logged before the answer goes out: once a client has it, its entry is in the log,
        # and a client's requests one after another are logged in that order.
        self.server.record(self, status, auth)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: HTTPStatus, auth: str = "") -> None:
        self._send(status, f"{status.value} - {status.phrase}\n", auth=auth)

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != TOKEN_PATH:
            return self._error(HTTPStatus.NOT_FOUND)
        if self.headers.get("X-Forwarded-For"):
            return self._error(HTTPStatus.FORBIDDEN)  # EC2 refuses tokens through a proxy
        ttl = self.headers.get(TTL_HEADER, "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            return self._error(HTTPStatus.BAD_REQUEST)
        token = self.server.tokens.issue(int(ttl))
        self._send(HTTPStatus.OK, token, headers={TTL_HEADER: ttl}, auth="issued")

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(HTTPStatus.OK, "\n".join(VERSIONS))
        token = self.headers.get(TOKEN_HEADER)
        if token is not None:
            if not self.server.tokens.valid(token):
                return self._error(HTTPStatus.UNAUTHORIZED, auth="invalid")
            used = "valid"
        else:
            if self.server.meta.http_tokens == "required":
                return self._error(HTTPStatus.UNAUTHORIZED, auth="none")
            used = "none"
        version, _, rest = path.lstrip("/").partition("/")
        if version not in VERSIONS:
            return self._error(HTTPStatus.NOT_FOUND, auth=used)
        if rest in ("", "/"):
            return self._send(HTTPStatus.OK, "dynamic\nmeta-data\nuser-data", auth=used)
        if rest == "user-data":
            data = self.server.meta.user_data
            if data is None:
                return self._error(HTTPStatus.NOT_FOUND, auth=used)
            return self._send(HTTPStatus.OK, data, "application/octet-stream", auth=used)
        top, _, sub = rest.partition("/")
        trees = {"meta-data": self.server.meta.meta_data(),
                 "dynamic": {"instance-identity": {"document": json.dumps(
                     self.server.meta.identity_document(), indent=2)}}}
        if top not in trees:
            return self._error(HTTPStatus.NOT_FOUND, auth=used)
        node = resolve(trees[top], [p for p in sub.split("/") if p])
        if node is None:
            return self._error(HTTPStatus.NOT_FOUND, auth=used)
        body = listing(node) if isinstance(node, dict) else node
        self._send(HTTPStatus.OK, body, auth=used)


class MetadataServer(ThreadingHTTPServer):
    """The IMDS of one instance, on `address` (the host's end of its veth; port 0: any)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], meta: InstanceMetadata, log: Path | None):
        self.meta = meta
        self.tokens = Tokens()
        self.log_path = log
        self._log_lock = threading.Lock()
        super().__init__(address, _Handler)

    def record(self, handler: BaseHTTPRequestHandler, status: int, auth: str) -> None:
        if self.log_path is None:
            return
        entry = {"ts": round(time.time(), 3), "client": handler.client_address[0],
                 "method": handler.command, "path": handler.path, "status": int(status),
                 "token": auth, "agent": handler.headers.get("User-Agent", "")}
        with self._log_lock, contextlib.suppress(OSError), open(self.log_path, "a") as out:
            out.write(json.dumps(entry) + "\n")

    @property
    def port(self) -> int:
        return self.server_address[1]


class _WheelHandler(BaseHTTPRequestHandler):
    """A flat index of the wheelhouse for pip's `find-links`, and its files. Nothing else."""

    server: WheelhouseServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        files = {p.name: p for p in self.server.directory.iterdir() if p.is_file()}
        name = self.path.split("?", 1)[0].lstrip("/")
        if name == "":
            links = "".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a><br>\n'
                            for n in sorted(files))
            body, kind = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode(), \
                "text/html"
        elif name in files:
            body, kind = files[name].read_bytes(), "application/octet-stream"
        else:
            body, kind = b"not found\n", "text/plain"
        status = HTTPStatus.OK if kind != "text/plain" else HTTPStatus.NOT_FOUND
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class WheelhouseServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], directory: Path):
        self.directory = Path(directory)
        super().__init__(address, _WheelHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]


def serve_in_background(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True, name=name)
    thread.start()
    return thread


def read_log(path: Path) -> list[dict]:
    """The IMDS log's entries (for tests and `local status`)."""
    entries = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return entries
