"""`python -m infra.local.faults LANE_JSON`: one lane of `local faults`."""

import sys

from infra.local.faults.catalog import lane_main

sys.exit(lane_main(sys.argv[1:]))
