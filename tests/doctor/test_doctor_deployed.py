"""A stack freshly deployed by this project's own provisioning code gets no error finding.

Its own module: mock_aws resets moto's in-process backends, which a moto server in the
same module would share.
"""

from __future__ import annotations

from doctor_seed import REGION
from moto import mock_aws

from infra.aws.clients import Clients, Target
from infra.aws.stack import Stack
from infra.config import Settings
from infra.doctor.diagnosis import diagnose
from infra.doctor.findings import ERROR, WARNING


def test_freshly_deployed_stack_has_no_error(tmp_path):
    with mock_aws():
        clients = Clients(Target(REGION, None))
        # explicit public CIDR: in-process moto looks like real AWS, and no test may look up
        # the deployer's public IP
        settings = Settings.fast(stack="doc-deployed", public_access="203.0.113.7/32",
                                 state_dir=str(tmp_path))
        state = Stack(clients, settings, progress=lambda _msg: None).deploy()
        findings = diagnose(clients, stack="doc-deployed")
        assert [f for f in findings if f.severity in (ERROR, WARNING)] == []
        found = next(f for f in findings if f.code == "LB_FOUND")
        assert state["lb_dns"] in found.message and "by tags" in found.message
        # and by the DNS name the deploy printed, as `make doctor LB=...` would
        assert not [f for f in diagnose(clients, lb=state["lb_dns"]) if f.severity == ERROR]
