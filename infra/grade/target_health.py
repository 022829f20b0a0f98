"""`grade --aws`: on a 502/503/504, the doctor's view of the targets, with AWS's reasons.

The only part of the grader that reads AWS. It imports infra.aws and infra.doctor when it
runs, never at import time, so a plain grade loads neither boto3 nor the doctor.
"""

from __future__ import annotations

import os

from infra.errors import UserError
from infra.grade.address import Address


def target_health(args, address: Address, state: dict) -> list[str]:
    """The doctor's view of the targets (AWS's reason codes), when it provides one.

    A local address (the testbed's 127.0.0.1:8080) stands for the load balancer its state
    file names: that file gives the DNS name, and the emulator's endpoint and region.
    """
    try:
        from infra.aws import clients as aws
        from infra.doctor.diagnosis import target_health_lines as lines

        lb_dns = str(state.get("lb_dns") or address.host)
        region = args.region or state.get("region")
        if state.get("endpoint_url") and not os.environ.get("AWS_ENDPOINT_URL"):
            # the emulator the state file was deployed into, with the testbed's fake keys
            from infra.aws.emulator import emulator_clients

            clients = emulator_clients(state["endpoint_url"], region or "us-east-1")
        else:
            clients = aws.Clients(aws.resolve_target(args.backend, region))
        return ["AWS: " + line for line in lines(clients, lb_dns)]
    except UserError as exc:
        return [f"--aws: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a diagnosis aid must never break the grade
        return [f"--aws: could not read target health ({type(exc).__name__}: {exc})"]
