"""AWS's errors by class (infra/aws/failures.py): each says what to do next, in one line."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    UnauthorizedSSOTokenError,
)

from infra.aws import failures


def client_error(code: str, message: str = "injected", status: int = 400,
                 operation: str = "RunInstances", action: str | None = None) -> ClientError:
    error = {"Code": code, "Message": message}
    if action:
        error["IamAction"] = action
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException",
                                  "UnauthorizedOperation", "Client.UnauthorizedOperation"])
def test_denied_names_the_action_and_the_policy_command(code):
    line = failures.explain(client_error(code, action="ec2:RunInstances"), "launching",
                            created_nothing=True)
    assert line.startswith("AWS denied ec2:RunInstances while launching")
    assert "python -m infra policy" in line and "a retry changes nothing" in line
    assert "Nothing was created" in line and "\n" not in line


def test_the_action_is_read_from_aws_message_when_not_stamped():
    message = ("User: arn:aws:iam::1:user/s is not authorized to perform: ssm:GetParameter on "
               "resource: x with an explicit deny in a service control policy")
    line = failures.explain(client_error("AccessDeniedException", message, 400, "GetParameter"),
                            "looking up the AMI")
    assert "AWS denied ssm:GetParameter" in line and "explicit deny" in line
    assert "ask them" in line


@pytest.mark.parametrize("code, names", [
    ("VcpuLimitExceeded", "L-1216C47A"), ("InstanceLimitExceeded", "instance limit"),
    ("VpcLimitExceeded", "VPCs per Region"), ("TooManyLoadBalancers", "Load Balancers"),
])
def test_limits_say_which_and_where_to_ask(code, names):
    line = failures.explain(client_error(code), "launching")
    assert names in line and failures.QUOTAS_CONSOLE in line


def test_opt_in_and_verification():
    assert "AWS Regions" in failures.explain(client_error("OptInRequired"), "x")
    assert "4 hours" in failures.explain(client_error("PendingVerification"), "x")


def test_expired_session_says_refresh_the_token():
    line = failures.explain(client_error("ExpiredToken"), "x")
    assert "AWS_SESSION_TOKEN" in line and "Learner Lab" in line


def test_temporary_keys_without_token(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert "needs AWS_SESSION_TOKEN" in failures.explain(client_error("AuthFailure"), "x")


def test_sso_says_aws_sso_login(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "course")
    line = failures.explain(UnauthorizedSSOTokenError(), "x")
    assert "`aws sso login --profile course`" in line


def test_no_credentials_and_no_network():
    assert "AWS_SESSION_TOKEN" in failures.explain(NoCredentialsError(), "x")
    line = failures.explain(EndpointConnectionError(endpoint_url="https://ec2"), "x")
    assert line.startswith("cannot reach AWS while x")


def test_anything_else_is_still_the_old_way_forward():
    line = failures.explain(client_error("InvalidParameterValue", "bad"), "creating it")
    assert line == ("stopped while creating it: InvalidParameterValue: bad. Nothing is lost: "
                    "run the same command again (it picks up what exists), or destroy the "
                    "stack to remove what was created")


def test_a_403_moto_could_not_shape_is_still_denied():
    """moto answers a JSON-protocol call with an XML AccessDenied; botocore then reports
    the status as the code."""
    xml = ("<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: u is not "
           "authorized to perform: ssm:GetParameter</Message></Error></ErrorResponse>")
    assert failures.is_denied(client_error("403", xml, 403))
    assert not failures.is_denied(client_error("403", "Forbidden by a proxy", 403))
