"""AWS's errors, sorted by what the user can do about them, each said in one line.

Throttling and 5xx never reach here: botocore's `standard` retry mode retries them
(clients.RETRY_CONFIG). What does reach here falls in one of these classes:

- denied (AccessDenied, UnauthorizedOperation, an explicit deny): name the IAM action and
  point at `python -m infra policy`; a retry changes nothing;
- a limit (VcpuLimitExceeded, InstanceLimitExceeded, VpcLimitExceeded, OptInRequired, ...):
  say which limit, and where to ask for more;
- credentials: an expired SSO session (`aws sso login`), expired session credentials
  (refresh AWS_SESSION_TOKEN: AWS Academy Learner Lab's sessions last 4 hours), keys AWS does
  not know, no credentials at all;
- the network: AWS cannot be reached;
- the rules of the accounts students have: an AWS Academy Learner Lab (only two regions,
  instance sizes and count, and the `voc-cancel-cred` deny once the lab session has ended),
  and the 2025 free plan (only free-tier-eligible instance types);
- anything else: the step, AWS's code and message, and "run it again or destroy".

The IAM action of a failed call is stamped on its error response by `stamp_iam_action`, an
`after-call` hook every Clients session carries: botocore's ClientError names the operation
but not the service, and `DescribeTags` alone exists in both EC2 and ELBv2. The region the
call went to is stamped beside it (a Learner Lab's denial depends on it).

The shapes of AWS's answers these lines recognise, as students met them:
- Learner Lab's ended session: "UnauthorizedOperation: You are not authorized to perform
  this operation. User: arn:aws:sts::<account>:assumed-role/voclabs/<user> is not authorized
  to perform: ec2:DescribeImages with an explicit deny in an identity-based policy:
  arn:aws:iam::<account>:policy/voc-cancel-cred" (STS still answers: GetCallerIdentity
  needs no permission);
- a region-locked account: EC2's UnauthorizedOperation in any other region
  (galaxyproject/cloudlaunch#242), the caller being Learner Lab's voclabs role;
- the free plan: "InvalidParameterCombination: The specified instance type is not eligible
  for Free Tier. For a list of Free Tier instance types, run 'describe-instance-types' with
  the filter 'free-tier-eligible=true'." (nilbuild/developer-roadmap#10171,
  LinkedInLearning/learning-terraform-3087701#345).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

from infra.config import (
    LEARNER_LAB_MAX_INSTANCES,
    LEARNER_LAB_REGIONS,
    LEARNER_LAB_ROLE,
    LEARNER_LAB_SIZES,
)
from infra.errors import UserError

POLICY_HINT = ("`make iam-policy` (`.venv/bin/python -m infra policy`) prints every permission "
               "this tool needs (docs/aws.md)")
DOCS = "docs/aws.md"

DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
    "AuthorizationError", "Forbidden",
})
# Service Quotas codes from the Service Quotas console (EC2 and VPC quotas pages).
LIMITS = {
    "VcpuLimitExceeded": "the account's On-Demand vCPU limit for standard (T) instances "
                         "(Service Quotas > Amazon EC2 > 'Running On-Demand Standard "
                         "(A, C, D, H, I, M, R, T, Z) instances', L-1216C47A)",
    "InstanceLimitExceeded": "the account's instance limit (Service Quotas > Amazon EC2 > "
                             "'Running On-Demand Standard ... instances')",
    "MaxSpotInstanceCountExceeded": "the Spot instance limit (Service Quotas > Amazon EC2)",
    "VpcLimitExceeded": "the VPCs per region limit, 5 by default (Service Quotas > Amazon "
                        "VPC > 'VPCs per Region', L-F678F1CE); or delete an unused VPC",
    "InternetGatewayLimitExceeded": "the internet gateways per region limit, 5 by default "
                                    "(Service Quotas > Amazon VPC, L-A4707A72)",
    "SubnetLimitExceeded": "the subnets per VPC limit (Service Quotas > Amazon VPC)",
    "RouteTableLimitExceeded": "the route tables per VPC limit (Service Quotas > Amazon VPC)",
    "SecurityGroupLimitExceeded": "the security groups per VPC limit (Service Quotas > "
                                  "Amazon VPC)",
    "RulesPerSecurityGroupLimitExceeded": "the rules per security group limit (Service "
                                          "Quotas > Amazon VPC)",
    "AddressLimitExceeded": "the Elastic IP / public IPv4 address limit (Service Quotas > "
                            "Amazon EC2 > 'EC2-VPC Elastic IPs')",
    "TooManyLoadBalancers": "the Application Load Balancers per region limit (Service "
                            "Quotas > Elastic Load Balancing)",
    "TooManyTargetGroups": "the target groups per region limit (Service Quotas > Elastic "
                           "Load Balancing)",
    "TooManyListeners": "the listeners per load balancer limit (Service Quotas > Elastic "
                        "Load Balancing)",
    "TooManyTags": "the tags per resource limit",
}
QUOTAS_CONSOLE = "https://console.aws.amazon.com/servicequotas/"
EXPIRED_TOKEN_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
UNKNOWN_KEY_CODES = frozenset({"InvalidClientTokenId", "UnrecognizedClientException",
                               "AuthFailure", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                               "IncompleteSignature", "MissingAuthenticationToken"})
# Either way the credentials themselves are refused: no retry or permission helps.
REJECTED_CREDENTIAL_CODES = EXPIRED_TOKEN_CODES | UNKNOWN_KEY_CODES
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded",
                            "TooManyRequestsException", "RequestThrottled"})

_PERFORM = re.compile(r"perform: ([a-z0-9-]+:[A-Za-z0-9]+)")


def stamp_iam_action(http_response=None, parsed=None, model=None, context=None,
                     **_kwargs) -> None:
    """after-call hook: on an error response, note the IAM action (`ec2:RunInstances`) and
    the region in the parsed error, which botocore hands to ClientError as `exc.response`."""
    if model is None or not isinstance(parsed, dict) or "Error" not in parsed:
        return
    parsed["Error"].setdefault("IamAction", iam_action_of(model))
    if (context or {}).get("client_region"):
        parsed["Error"].setdefault("Region", context["client_region"])


def iam_action_of(model) -> str:
    """The IAM action of a botocore OperationModel: the service's signing name (ELBv2 signs as
    `elasticloadbalancing`, IAM's prefix for it) and the operation's name."""
    service = model.service_model
    prefix = service.signing_name or service.endpoint_prefix
    return f"{prefix}:{model.name}"


def iam_action(exc: ClientError) -> str:
    """The IAM action a failed call needed: stamped by the hook, else read from AWS's message
    ('... is not authorized to perform: ssm:GetParameter ...'), else the operation's name."""
    err = exc.response.get("Error", {})
    found = _PERFORM.search(str(err.get("Message") or ""))
    return err.get("IamAction") or (found.group(1) if found else exc.operation_name)


def code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


# What LocalStack answers for a service outside its plan: HTTP 501 and this kind of message
# ("The API for service elbv2 is either not included in your current license plan or has not
# yet been emulated by LocalStack", 4.13).
_NOT_AVAILABLE_HINTS = ("not yet implemented", "pro feature", "license", "not included",
                        "not yet been emulated")


def is_service_missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = str(err.get("Message") or "").lower()
    return status == 501 or err.get("Code") == "NotImplemented" or (
        err.get("Code") == "InternalFailure" and any(h in message for h in _NOT_AVAILABLE_HINTS))


def no_elbv2_line(where: str = "") -> str:
    return (f"the endpoint{' ' + where if where else ''} has no Elastic Load Balancing v2 "
            "(LocalStack's free code lacks it). Either run LocalStack's licensed image with your "
            "token (`LOCALSTACK_AUTH_TOKEN=... docker compose -f docker-compose.localstack.yml "
            "up -d --wait localstack-pro`), or use the moto backend: start "
            "`.venv/bin/moto_server -H 127.0.0.1 -p 5001 &` and run "
            "`AWS_ENDPOINT_URL=http://127.0.0.1:5001 AWS_REGION=us-east-1 "
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing make deploy-aws`")


def is_denied(exc: ClientError) -> bool:
    code = code_of(exc)
    if code in DENIED_CODES or code.endswith(".UnauthorizedOperation"):
        return True
    # A 403 whose body the client could not parse as its protocol's error (moto answers a
    # JSON-protocol call with XML): AWS's wording still says what it is.
    message = str(exc.response.get("Error", {}).get("Message") or "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return (code == "403" or status == 403) and "not authorized to perform" in message


def explain(exc: Exception, step: str, *, created_nothing: bool = False) -> str:
    """One line for any AWS failure: what happened while doing `step`, and what to do next."""
    if isinstance(exc, ClientError):
        return _client_error(exc, step, created_nothing)
    return _botocore_error(exc, step)


def _client_error(exc: ClientError, step: str, created_nothing: bool) -> str:
    code, message = code_of(exc), str(exc.response.get("Error", {}).get("Message") or "")
    action = iam_action(exc)
    nothing = " Nothing was created." if created_nothing else ""
    if is_denied(exc) and "voc-cancel-cred" in message:
        return lab_session_ended_line() + nothing
    region = str(exc.response.get("Error", {}).get("Region") or "")
    if is_denied(exc) and LEARNER_LAB_ROLE in message:
        if region and region not in LEARNER_LAB_REGIONS:
            return learner_lab_region_line(region) + nothing
        if action == "ec2:RunInstances":
            return learner_lab_limits_line(
                f"AWS refused the launch ({code}): drop --instance-type for a micro type, or "
                "use a smaller --count") + nothing
    if action.startswith("elasticloadbalancing:") and is_service_missing(exc):
        return no_elbv2_line()
    if code == "InvalidParameterCombination" and "free tier" in message.lower():
        return free_plan_line(step) + nothing
    if is_denied(exc):
        who = ("an explicit deny (a service control policy or permissions boundary set by "
               "whoever runs the account: ask them)" if "explicit deny" in message.lower()
               else "your IAM user or role lacks it")
        return (f"AWS denied {action} while {step} ({code}): {who}. {POLICY_HINT}; a retry "
                f"changes nothing.{nothing}")
    if code in LIMITS:
        return (f"{code} while {step}: {message} This is {LIMITS[code]}: ask for more at "
                f"{QUOTAS_CONSOLE} (or free some up), then run the same command again.{nothing}")
    if code == "OptInRequired":
        return (f"OptInRequired while {step}: the region is not enabled for this account, or "
                "the AMI needs a subscription. Enable the region (AWS console > Account > AWS "
                "Regions) or choose another --region (us-east-1 is always enabled)." + nothing)
    if code == "PendingVerification":
        return (f"PendingVerification while {step}: AWS is still verifying this new account "
                "for this region (usually minutes, up to 4 hours). Try again later; if it "
                "lasts, AWS Support can help." + nothing)
    if code in EXPIRED_TOKEN_CODES:
        return expired_session_line(code)
    if code in UNKNOWN_KEY_CODES:
        return unknown_keys_line(code)
    if code == "RequestExpired":
        return ("RequestExpired: AWS found the request's time too far from its own: set this "
                "machine's clock right (e.g. enable NTP), then run the same command again")
    if code in THROTTLE_CODES:
        return (f"AWS kept throttling while {step} ({code}) even after botocore's retries: "
                "wait a minute, then run the same command again (it picks up what exists)")
    return (f"stopped while {step}: {code}: {message}. Nothing is lost: run the same command "
            "again (it picks up what exists), or destroy the stack to remove what was created")


def _botocore_error(exc: Exception, step: str) -> str:
    if isinstance(exc, (SSOError, TokenRetrievalError)) or "sso" in type(exc).__name__.lower():
        return sso_line()
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return no_credentials_line()
    if isinstance(exc, NoRegionError):
        return no_region_line()
    if isinstance(exc, ProfileNotFound):
        return profile_not_found_line(str(getattr(exc, "kwargs", {}).get("profile", "")))
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return (f"cannot reach AWS while {step} ({exc}): check the network (and a proxy or "
                "VPN), then run the same command again")
    return (f"stopped while {step}: {exc}. Run the same command again, or destroy the stack "
            "to remove what was created")


def as_user_error(exc: Exception, step: str, *, created_nothing: bool = False,
                  exit_code: int = 1) -> UserError:
    return UserError(explain(exc, step, created_nothing=created_nothing), exit_code=exit_code)


def is_aws_failure(exc: BaseException) -> bool:
    return isinstance(exc, ClientError | BotoCoreError)


class DeployError(UserError):
    """An AWS call failed part-way; the message names the step and the way forward."""

    exit_code = 1


@contextlib.contextmanager
def stepping(step: str, *, created_nothing: bool = False) -> Iterator[None]:
    """Turn an AWS error raised within into one line naming `step` and the way forward, by
    its class (`explain`): denied, a limit, credentials, the network, or other."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(explain(exc, step, created_nothing=created_nothing)) from None


# --- the credential lines, shared by the preflight and the CLI ---------------------------


def no_region_line() -> str:
    return ("no AWS region set: pass --region us-east-1, or set AWS_REGION=us-east-1, or run "
            "`aws configure` and give a default region name")


def no_credentials_line() -> str:
    return ("no AWS credentials found: run `aws configure` (access keys), or `aws sso login` "
            "with AWS_PROFILE set (IAM Identity Center), or set AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (AWS Academy Learner Lab: copy all "
            f"three from 'AWS Details'); see {DOCS}")


def sso_line() -> str:
    profile = os.environ.get("AWS_PROFILE")
    command = f"aws sso login --profile {profile}" if profile else "aws sso login"
    return (f"your AWS SSO session has expired or is not logged in: run `{command}`, then run "
            "the same command again")


def expired_session_line(code: str = "ExpiredToken") -> str:
    return (f"your temporary AWS credentials have expired ({code}): get fresh ones and set "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN again (AWS Academy "
            "Learner Lab: sessions last 4 hours; start the lab again and copy all three from "
            "'AWS Details'), or `aws sso login` for an SSO profile")


def lab_session_ended_line() -> str:
    return ("your lab session has ended: start the lab again and copy the new credentials "
            "(AWS Academy: 'Start Lab', then 'AWS Details', all three values); AWS attached "
            "the voc-cancel-cred deny to the old ones, and what you built is still there")


def learner_lab_region_line(region: str) -> str:
    return (f"this account allows only {' and '.join(LEARNER_LAB_REGIONS)} (AWS Academy "
            f"Learner Lab), not {region}: run again with --region {LEARNER_LAB_REGIONS[0]} "
            f"(or AWS_REGION={LEARNER_LAB_REGIONS[0]})")


def learner_lab_limits_line(what: str) -> str:
    return (f"this account runs at most {LEARNER_LAB_MAX_INSTANCES} instances, of sizes "
            f"{LEARNER_LAB_SIZES[0]} to {LEARNER_LAB_SIZES[-1]} (AWS Academy Learner Lab): "
            f"{what}.")


def free_plan_line(step: str) -> str:
    return ("the instance type is not eligible for this account's free plan "
            f"(InvalidParameterCombination while {step}): accounts on AWS's free plan (those "
            "created since 15 July 2025) launch only free-tier-eligible types. Drop "
            "--instance-type to let deploy choose one, or pick one that `aws ec2 "
            "describe-instance-types --filters Name=free-tier-eligible,Values=true` lists, or "
            "upgrade the account to a paid plan.")


def unknown_keys_line(code: str) -> str:
    key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    if key.startswith("ASIA") and not os.environ.get("AWS_SESSION_TOKEN"):
        return (f"AWS does not accept these credentials ({code}): the access key starts with "
                "ASIA, so it is temporary and needs AWS_SESSION_TOKEN as well (Learner Lab "
                "gives three values: set all three)")
    return (f"AWS does not accept these credentials ({code}): check AWS_PROFILE or the keys "
            "(`aws configure list` shows which are used), or refresh your session")


def profile_not_found_line(profile: str) -> str:
    return (f"AWS_PROFILE names a profile {profile!r} that is not in your AWS config: list "
            "them with `aws configure list-profiles`, or unset AWS_PROFILE")
