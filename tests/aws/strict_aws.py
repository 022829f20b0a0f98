"""A fault-injecting HTTP proxy in front of a moto server: AWS as strict as it really is.

moto answers every call at once and consistently; AWS does not. The proxy sits between
botocore and moto (AWS_ENDPOINT_URL points at it), so the real command line, in a real
subprocess, meets what AWS does, on the wire, with AWS-shaped error bodies that botocore
parses and its retry mode retries like AWS's own:

- eventual consistency: each id an EC2 create returns (VPC, subnet, gateway, route table,
  security group, instance) is "not found" once, by the next EC2 call that names it
  ("Eventual consistency in the Amazon EC2 API", which names InvalidGroup.NotFound after
  CreateSecurityGroup; the codes are those of the EC2 API's error code list);
- instances that stay `pending` for a few describes after RunInstances, and a stale
  `pending` for a few describes after TerminateInstances;
- throttling (EC2: 503 RequestLimitExceeded; ELBv2 and STS: 400 Throttling; SSM: 400
  ThrottlingException) and 503s, on a fraction of the requests, before they reach moto;
- DependencyViolation on deleting a security group, subnet or VPC, and ResourceInUse on
  deleting a target group, a few times per resource, as AWS answers while a deleted load
  balancer's network interfaces linger;
- denied actions: AccessDeniedException (SSM, JSON), UnauthorizedOperation (EC2, 403, also
  for a dry run), AccessDenied (ELBv2), each with AWS's "is not authorized to perform" text;
- an account whose only free-tier-eligible types are the ones given;
- a load balancer that ends `failed`, with a reason;
- the accounts students have: an AWS Academy Learner Lab (STS names its voclabs role; other
  regions than us-east-1 and us-west-2 are denied; once the lab session has ended, every call
  but STS meets the explicit deny `voc-cancel-cred`), and the 2025 free plan (RunInstances,
  dry run included, refuses a type that is not free-tier eligible with
  InvalidParameterCombination), with the texts AWS answers (infra/aws/failures.py cites them);
- RunInstances refusing an AMI of another architecture than the instance type's, as EC2 does
  (InvalidParameterValue, also for a dry run: skypilot-org/skypilot#6315,
  hashicorp/packer-plugin-amazon#649);
- an emulator slow to answer while it loads a service (moto and LocalStack load a service's
  code on first use: seconds on a busy machine): every call of that service until it has
  loaded waits for it.

Eventual consistency is injected on EC2 calls only: ELBv2 names the same ids, but its
answers to an unknown id are its own (ValidationError) and no AWS page documents them.
Faults are injected before a request reaches moto, so moto never sees the failed attempt
(an answer lost after AWS acted is not simulated).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlparse

ACCOUNT = "123456789012"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/student"
# AWS Academy Learner Lab: the role its credentials act as, and the regions it allows.
LAB_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/voclabs/user2345678=student@example.edu"
LAB_REGIONS = ("us-east-1", "us-west-2")
LAB_ENDED_POLICY = f"arn:aws:iam::{ACCOUNT}:policy/voc-cancel-cred"
FREE_PLAN_REFUSAL = ("The specified instance type is not eligible for Free Tier. For a list of "
                     "Free Tier instance types, run 'describe-instance-types' with the filter "
                     "'free-tier-eligible=true'.")

# What each EC2 create returns as the new id, and how EC2 says it does not know that id yet.
CREATED_ID = {
    "CreateVpc": "vpcId", "CreateSubnet": "subnetId",
    "CreateInternetGateway": "internetGatewayId", "CreateRouteTable": "routeTableId",
    "CreateSecurityGroup": "groupId", "RunInstances": "instanceId",
}
NOT_FOUND = {
    "vpc": ("InvalidVpcID.NotFound", "The vpc ID '{}' does not exist"),
    "subnet": ("InvalidSubnetID.NotFound", "The subnet ID '{}' does not exist"),
    "igw": ("InvalidInternetGatewayID.NotFound", "The internetGateway ID '{}' does not exist"),
    "rtb": ("InvalidRouteTableID.NotFound", "The routeTable ID '{}' does not exist"),
    "sg": ("InvalidGroup.NotFound", "The security group '{}' does not exist"),
    "i": ("InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
}
IN_USE = {
    "DeleteSecurityGroup": ("GroupId", "DependencyViolation",
                            "resource {} has a dependent object"),
    "DeleteSubnet": ("SubnetId", "DependencyViolation",
                     "The subnet '{}' has dependencies and cannot be deleted."),
    "DeleteVpc": ("VpcId", "DependencyViolation",
                  "The vpc '{}' has dependencies and cannot be deleted."),
    "DeleteTargetGroup": ("TargetGroupArn", "ResourceInUse",
                          "Target group '{}' is currently in use by a listener or a rule"),
}
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}


@dataclass
class Strictness:
    """Which faults the proxy injects; all off by default."""

    eventual_consistency: bool = False
    pending_after_launch: int = 0  # describes that still show a new instance pending
    stale_after_terminate: int = 0  # describes that still show a terminated one pending
    throttle_every: int = 0  # every n-th request is throttled (0: never)
    unavailable_every: int = 0  # every n-th request gets a 503 (0: never)
    in_use_times: int = 0  # DependencyViolation / ResourceInUse per resource, on delete
    deny: frozenset[str] = frozenset()  # IAM actions answered "not authorized"
    free_tier_only: tuple[str, ...] | None = None  # the account's only free-tier types
    load_balancer_fails: bool = False  # DescribeLoadBalancers shows it `failed`
    service_load_time: float = 0.0  # seconds each service takes to load, from its first call
    learner_lab: bool = False  # the credentials are a Learner Lab's: two regions only
    lab_session_ended: bool = False  # ... and its session has ended (voc-cancel-cred)
    free_plan: bool = False  # RunInstances refuses types outside free_tier_only
    architectures_must_match: bool = False  # RunInstances refuses an AMI of another arch
    # Any other AWS answer: IAM action -> (HTTP status, code, message), for non-dry-run calls.
    answers: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    @classmethod
    def everything(cls) -> Strictness:
        """All the faults a working deploy must survive, at once."""
        return cls(eventual_consistency=True, pending_after_launch=2, stale_after_terminate=2,
                   throttle_every=7, unavailable_every=11, in_use_times=2)


@dataclass
class Request:
    service: str  # the signing name: ec2, elasticloadbalancing, ssm, sts
    action: str
    params: list[tuple[str, str]]
    dry_run: bool = False
    region: str = ""

    @property
    def iam_action(self) -> str:
        return f"{self.service}:{self.action}"

    def values(self) -> set[str]:
        """The values the request names, filters left out (a filter on an unknown id
        matches nothing; it is not an error)."""
        return {v for k, v in self.params if not k.startswith("Filter.")}

    def first(self, key: str) -> str | None:
        return next((v for k, v in self.params if k == key or k.startswith(f"{key}.")), None)


@dataclass
class Injected:
    """What the proxy did, for the tests to check that each fault really happened."""

    requests: list[Request] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    not_found_ids: list[str] = field(default_factory=list)


class StrictAWS:
    """The proxy: `with StrictAWS(moto_endpoint, Strictness(...)) as proxy: proxy.url`."""

    def __init__(self, upstream: str, strictness: Strictness):
        self.upstream = urlparse(upstream)
        self.strictness = strictness
        self.injected = Injected()
        self._lock = threading.Lock()
        self._fresh: set[str] = set()  # ids created, not yet named by a later EC2 call
        self._pending: Counter = Counter()  # instance id -> describes left showing pending
        self._in_use: Counter = Counter()  # resource -> in-use answers given
        self._count = 0
        self._loaded_at: dict[str, float] = {}  # service -> when it has loaded
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StrictAWS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def still_fresh(self) -> set[str]:
        """Ids a create returned that no later EC2 call has named yet."""
        with self._lock:
            return set(self._fresh)

    def reset(self, strictness: Strictness | None = None) -> None:
        with self._lock:
            if strictness is not None:
                self.strictness = strictness
            self.injected = Injected()

    # --- one request ----------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) \
            -> tuple[int, dict[str, str], bytes]:
        request = _parse(headers, body)
        with self._lock:
            self.injected.requests.append(request)
            self._count += 1
            fault = self._before(request)
        if fault:
            return fault
        if self.strictness.architectures_must_match and request.action == "RunInstances":
            mismatch = self._architecture_mismatch(request)
            if mismatch:
                with self._lock:
                    self.injected.faults["architecture"] += 1
                return _error(request, 400, "InvalidParameterValue", mismatch)
        if request.action == "DescribeInstanceTypes" and self.strictness.free_tier_only \
                is not None and any(v == "free-tier-eligible" for _, v in request.params):
            if not self.strictness.free_tier_only:  # EC2's answer when nothing matches
                self.injected.faults["free_tier_only"] += 1
                return 200, {"Content-Type": "text/xml;charset=UTF-8"}, (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstanceTypesResponse '
                    'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>'
                    f"{uuid.uuid4()}</requestId><instanceTypeSet/>"
                    "</DescribeInstanceTypesResponse>").encode()
            body = self._only_free(request)
        status, reply_headers, reply = self._forward(method, path, headers, body)
        with self._lock:
            reply = self._after(request, status, reply)
            loaded_at = self._loaded_at.setdefault(
                request.service, time.monotonic() + self.strictness.service_load_time)
        if time.monotonic() < loaded_at:
            self.injected.faults["loading"] += 1
            time.sleep(loaded_at - time.monotonic())  # the answer waits for the service
        return status, reply_headers, reply

    def _before(self, request: Request):
        s, n = self.strictness, self._count
        if s.throttle_every and n % s.throttle_every == 0:
            self.injected.faults["throttled"] += 1
            return _throttled(request)
        if s.unavailable_every and n % s.unavailable_every == 0:
            self.injected.faults["unavailable"] += 1
            return _error(request, 503, "Unavailable" if request.service == "ec2"
                          else "ServiceUnavailable", "The service is unavailable. Try again.")
        if request.iam_action in s.deny:
            self.injected.faults["denied"] += 1
            return _denied(request)
        if (s.learner_lab or s.lab_session_ended) and request.service != "sts":
            if s.lab_session_ended:
                self.injected.faults["lab_session_ended"] += 1
                return _denied(request, LAB_ARN,
                               f"with an explicit deny in an identity-based policy: "
                               f"{LAB_ENDED_POLICY}")
            if request.region not in LAB_REGIONS:
                self.injected.faults["lab_region"] += 1
                return _denied(request, LAB_ARN, "with an explicit deny in a service control "
                               "policy")
        if s.free_plan and request.action == "RunInstances" and \
                request.first("InstanceType") not in (s.free_tier_only or ()):
            self.injected.faults["free_plan"] += 1
            return _error(request, 400, "InvalidParameterCombination", FREE_PLAN_REFUSAL)
        if request.iam_action in s.answers and not request.dry_run:
            self.injected.faults["answered"] += 1
            return _error(request, *s.answers[request.iam_action])
        if s.eventual_consistency and request.service == "ec2":
            unknown = sorted(self._fresh & request.values())
            if unknown:  # one id at a time: each one is unknown to exactly one call
                self._fresh.discard(unknown[0])
                self.injected.faults["not_found"] += 1
                self.injected.not_found_ids.append(unknown[0])
                code, message = NOT_FOUND[unknown[0].split("-")[0]]
                return _error(request, 400, code, message.format(unknown[0]))
        if s.in_use_times and request.action in IN_USE:
            key, code, message = IN_USE[request.action]
            resource = request.first(key) or "?"
            if self._in_use[resource] < s.in_use_times:
                self._in_use[resource] += 1
                self.injected.faults["in_use"] += 1
                return _error(request, 400, code, message.format(resource))
        if request.action == "TerminateInstances" and not request.dry_run:
            for key, value in request.params:
                if key.startswith("InstanceId."):
                    self._pending[value] = s.stale_after_terminate
        return None

    def _after(self, request: Request, status: int, reply: bytes) -> bytes:
        s = self.strictness
        if request.action == "GetCallerIdentity" and status < 300 and \
                (s.learner_lab or s.lab_session_ended):
            return re.sub(rb"<Arn>[^<]*</Arn>", f"<Arn>{LAB_ARN}</Arn>".encode(), reply)
        if status >= 300 or request.service not in ("ec2", "elasticloadbalancing"):
            return reply
        text = reply.decode()
        if request.action in CREATED_ID and not request.dry_run:
            new = re.findall(rf"<{CREATED_ID[request.action]}>([a-z]+-[0-9a-f]+)<", text)
            if s.eventual_consistency:
                self._fresh.update(new)
            if request.action == "RunInstances":
                for instance_id in new:
                    self._pending[instance_id] = s.pending_after_launch
        if request.action == "DescribeInstances":
            text = self._show_pending(text)
        if request.action == "DescribeLoadBalancers" and s.load_balancer_fails:
            self.injected.faults["lb_failed"] += 1
            text = re.sub(r"<State>\s*<Code>\w+</Code>\s*</State>",
                          "<State><Code>failed</Code><Reason>Elastic Load Balancing could "
                          "not provision the load balancer (injected)</Reason></State>", text)
        return text.encode()

    def _show_pending(self, text: str) -> str:
        for instance_id, left in list(self._pending.items()):
            if left <= 0 or f"<instanceId>{instance_id}</instanceId>" not in text:
                continue
            self._pending[instance_id] -= 1
            self.injected.faults["pending"] += 1
            text = re.sub(rf"(<instanceId>{instance_id}</instanceId>.*?<instanceState>\s*"
                          r"<code>)\d+(</code>\s*<name>)[a-z-]+(</name>)",
                          rf"\g<1>{STATE_CODES['pending']}\g<2>pending\g<3>", text, count=1,
                          flags=re.S)
        return text

    def _only_free(self, request: Request) -> bytes:
        """Ask moto for exactly the given types instead: its real description of each."""
        self.injected.faults["free_tier_only"] += 1
        params = [(k, v) for k, v in request.params if not k.startswith("Filter.")]
        params += [(f"InstanceType.{i + 1}", t)
                   for i, t in enumerate(self.strictness.free_tier_only or ())]
        return urlencode(params).encode()

    def _architecture_mismatch(self, request: Request) -> str | None:
        """EC2's refusal of an AMI whose architecture is not the instance type's, in its
        words; None when they match. moto (behind the proxy) says what each one is."""
        import boto3

        moto = {"region_name": request.region or "us-east-1", "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "endpoint_url": f"http://{self.upstream.hostname}:{self.upstream.port}"}
        ec2 = boto3.client("ec2", **moto)
        image = ec2.describe_images(ImageIds=[request.first("ImageId")])["Images"][0]
        kind = ec2.describe_instance_types(InstanceTypes=[request.first("InstanceType")])
        supported = kind["InstanceTypes"][0]["ProcessorInfo"]["SupportedArchitectures"]
        if image["Architecture"] in supported:
            return None
        return (f"The architecture '{supported[0]}' of the specified instance type does not "
                f"match the architecture '{image['Architecture']}' of the specified AMI. "
                "Specify an instance type and an AMI that have matching architectures, and "
                "try again. You can use 'describe-instance-types' or 'describe-images' to "
                "discover the architecture of the instance type or AMI.")

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=60)
        try:
            sent = {k: v for k, v in headers.items()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")}
            sent["Content-Length"] = str(len(body))
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = response.read()
            kept = {k: v for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")}
            return response.status, kept, reply
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    proxy: StrictAWS

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, reply = self.proxy.handle(self.command, self.path,
                                                   dict(self.headers.items()), body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *args) -> None:  # quiet: the tests read `injected` instead
        pass


def _parse(headers: dict[str, str], body: bytes) -> Request:
    lower = {k.lower(): v for k, v in headers.items()}
    scope = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/", lower.get("authorization", ""))
    region, service = scope.groups() if scope else ("", "?")
    target = lower.get("x-amz-target")
    if target:  # JSON protocol (SSM): the action is in the header, the params in JSON
        action = target.rsplit(".", 1)[-1]
        params = [(k, json.dumps(v) if not isinstance(v, str) else v)
                  for k, v in (json.loads(body or b"{}") or {}).items()]
    else:
        params = parse_qsl(body.decode(), keep_blank_values=True)
        action = dict(params).get("Action", "?")
    dry_run = any(k == "DryRun" and v.lower() == "true" for k, v in params)
    return Request(service, action, params, dry_run, region)


def _error(request: Request, status: int, code: str, message: str):
    request_id = str(uuid.uuid4())
    if request.service == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
                f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>")
        return status, {"Content-Type": "text/xml;charset=UTF-8"}, body.encode()
    if request.service == "ssm":
        body = json.dumps({"__type": code, "message": message})
        return status, {"Content-Type": "application/x-amz-json-1.1",
                        "x-amzn-RequestId": request_id}, body.encode()
    body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>")
    return status, {"Content-Type": "text/xml"}, body.encode()


def _throttled(request: Request):
    if request.service == "ec2":
        return _error(request, 503, "RequestLimitExceeded", "Request limit exceeded.")
    if request.service == "ssm":
        return _error(request, 400, "ThrottlingException", "Rate exceeded")
    return _error(request, 400, "Throttling", "Rate exceeded")


def _denied(request: Request, who: str = USER_ARN, because: str | None = None):
    action = request.iam_action
    because = because or (f"on resource: * because no identity-based policy allows the "
                           f"{action} action")
    why = f"User: {who} is not authorized to perform: {action} {because}"
    if request.service == "ec2":
        return _error(request, 403, "UnauthorizedOperation",
                      f"You are not authorized to perform this operation. {why}. Encoded "
                      "authorization failure message: injected")
    if request.service == "ssm":
        return _error(request, 400, "AccessDeniedException", why)
    return _error(request, 403, "AccessDenied", why)
