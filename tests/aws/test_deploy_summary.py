"""What deploy and status tell the student at the end: the account and region, the DNS name to
submit, what it costs per hour and so far (at pricing.py's prices), and how to stop paying;
against an emulator, that the name does not resolve and how to grade locally instead."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from infra.aws import pricing
from infra.aws.cli import render_deploy_summary, render_status
from infra.aws.stack import Stack


def _quiet(_message: str) -> None:
    pass


@pytest.fixture
def deployed(aws, settings):
    stack = Stack(aws, settings, progress=_quiet)
    return stack, stack.deploy()


def test_deploy_summary_on_aws_says_what_to_submit_and_what_it_costs(deployed):
    stack, state = deployed
    text = render_deploy_summary(state, stack.settings)
    assert "deployed stack t-prov: account 123456789012, region us-east-1" in text
    assert f"submit this: {state['lb_dns']}" in text
    assert f"make grade LB={state['lb_dns']} STACK=t-prov" in text
    # 2 instances, 2 root volumes, 1 ALB, 4 public IPv4 (2 instances, 2 ALB zones)
    assert "2 x t3.micro instance" in text and "2 x $0.0104/h = $0.0208/h" in text
    assert "1 x Application Load Balancer" in text and "$0.0225/h" in text
    assert "4 x public IPv4 address" in text and "4 x $0.0050/h = $0.0200/h" in text
    hourly = 2 * 0.0104 + 2 * 8 * 0.08 / 730 + 0.0225 + 4 * 0.005
    assert f"total: about ${hourly:.4f} per hour" in text
    assert "us-east-1 On-Demand list prices, approximations" in text
    assert "run `make destroy-aws STACK=t-prov` when you are done" in text
    assert "does not resolve" not in text


def test_deploy_summary_against_an_emulator_says_the_name_does_not_resolve(deployed):
    stack, state = deployed
    text = render_deploy_summary({**state, "emulator": True,
                                  "endpoint_url": "http://127.0.0.1:5001"}, stack.settings)
    assert "does not resolve" in text and "submit this" not in text
    assert "`make local-up`" in text and "make grade LB=127.0.0.1:8080" in text
    assert "cost: nothing here" in text


def test_status_says_how_long_the_stack_has_existed_and_what_it_cost(deployed):
    stack, _state = deployed
    status = stack.status()
    assert status["account"] == "123456789012" and status["load_balancer"]["zones"] == 2
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    status["load_balancer"]["created"] = two_hours_ago
    for inst in status["instances"]:
        inst["launch_time"] = two_hours_ago
    text = render_status(status)
    # 2 x t3.micro + 2 root volumes + 2 instance IPs + ALB + its 2 IPs, for 2 hours
    hourly = 2 * 0.0104 + 2 * 8 * 0.08 / 730 + 2 * 0.005 + 0.0225 + 2 * 0.005
    assert f"up 2 h 00 min: about ${2 * hourly:.2f} so far, ${hourly:.4f} per hour now" in text
    assert "when you are done: make destroy-aws STACK=t-prov" in text


def test_a_type_the_table_does_not_know_is_said_so():
    items = pricing.stack_items(["x9.huge"], 1, 1, 2)
    lines = pricing.render_items(items)
    assert any("x9.huge" in line and "unknown" in line and "not in the table" in line
               for line in lines)


@pytest.mark.parametrize("hours, text", [(0.25, "15 min"), (2.5, "2 h 30 min"),
                                          (49.0, "2 d 1 h 00 min")])
def test_ages(hours, text):
    assert pricing.render_age(hours) == text


def test_cost_so_far_counts_each_resource_from_its_own_start():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    instances = [{"type": "t2.micro", "launch_time": "2026-01-01T10:00:00+00:00",
                  "public_ip": "198.51.100.1"},
                 {"type": "t2.micro", "launch_time": "2026-01-01T11:00:00Z", "public_ip": None}]
    hours, spent = pricing.cost_so_far(instances, {"created": "2026-01-01T09:00:00+00:00",
                                                   "zones": 2}, now)
    volume = 8 * 0.08 / 730
    assert hours == 3.0
    assert spent == pytest.approx(2 * (0.0116 + volume + 0.005) + 1 * (0.0116 + volume)
                                  + 3 * (0.0225 + 2 * 0.005))


def test_every_free_tier_candidate_has_a_price():
    """The types the preflight prefers, and the ones moto's free-tier answer lists."""
    from infra.config import PREFERRED_TYPES

    for itype in (*PREFERRED_TYPES, "t3.small", "c7i-flex.large", "m7i-flex.large"):
        assert pricing.instance_hourly(itype), itype


def test_settings_do_not_leak_into_prices(settings):
    """Pricing is a table, not a setting: changing the instance count changes the lines."""
    three = dataclasses.replace(settings, instance_count=3)
    items = pricing.stack_items(["t3.micro"] * three.instance_count, 3, 1, 2)
    assert items[0].count == 3 and items[-1].count == 5
