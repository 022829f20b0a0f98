"""An instance boot script EC2 would refuse stops deploy before anything is created."""

import dataclasses

import pytest
from provision_helpers import tagged_resources

from infra.aws.stack import Stack
from infra.errors import UserError


def test_oversize_user_data_is_refused_before_anything_exists(aws, settings):
    too_big = dataclasses.replace(settings, user_data="#!/bin/bash\n" + "#" * 16384)
    with pytest.raises(UserError, match="16 KB"):
        Stack(aws, too_big).deploy()
    assert not any(tagged_resources(aws).values())
    assert aws.ec2.describe_instances()["Reservations"] == []


def test_user_data_of_16383_bytes_still_deploys(aws, settings):
    script = "#!/bin/bash\n"
    at_limit = dataclasses.replace(settings, user_data=script + "#" * (16383 - len(script)))
    state = Stack(aws, at_limit).deploy()
    assert len(state["instances"]) == 2
