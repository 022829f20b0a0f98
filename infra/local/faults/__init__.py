"""Fault drills: the seed FAQ's mistakes, made on a running testbed (moved from faults.py)."""

from infra.local.faults.catalog import *  # noqa: F403
from infra.local.faults.catalog import PRIVATE  # noqa: F401
