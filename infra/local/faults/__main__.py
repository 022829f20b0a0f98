"""`python -m infra.local.faults SPEC_JSON`: one lane of `local faults` (lane.py)."""

import sys

from infra.local.faults.lane import lane_main

sys.exit(lane_main(sys.argv[1:]))
