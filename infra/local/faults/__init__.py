"""Fault drills: the seed FAQ's mistakes, made on a running testbed as a student makes them.

    python -m infra local break app-sg-closed     # revoke the rule, as in the console
    python -m infra local fix app-sg-closed       # and put it back
    python -m infra local break --list            # each fault with the FAQ entry it stands for
    python -m infra local faults                  # all of them, side by side (make test-faults)

`break` and `fix` go through boto3 to the testbed's moto server (app-crashed excepted: a
crash happens on the instance, not in the console), and the testbed answers as AWS would:
the supervisor applies the change to the data path and to DescribeTargetHealth.

`local faults` runs every fault, side by side on testbeds of their own (one stack, moto
server, Caddy and supervisor per lane, faults that share a lane one after the other), and
for each: break it, wait for the effect, grade (the autograder must FAIL, or PASS where an
ALB would still serve), run the doctor (it must name the fault by its finding code), fix it,
wait until the stack has recovered (the targets healthy again) and grade again (PASS).
The table at the end has one row per fault.

The package, one job a module:
- fault: what a fault is (a small class: its words, apply, undo, effect, broken);
- catalog, instances, bootscript: the faults, and the table of them (FAULTS);
- site: where a fault is made (FaultSite: the testbed's resources by name, through
  infra.aws's finders; its state, through the supervisor);
- roundtrip: one fault end to end (RoundTrip: a row of the table); commands: the doctor
  as a user runs it, in a process of its own;
- lane, scheduler: the lanes (a process each, JSON lines back; schema checks them) and
  how the faults are shared out over them; ownership: what one run owns, and stopping it.
"""

from infra.local.faults.catalog import FAULTS, get, listing
from infra.local.faults.fault import Fault
from infra.local.faults.instances import PRIVATE
from infra.local.faults.roundtrip import RoundTrip, effect_window, render, run_fault
from infra.local.faults.scheduler import lanes, run_all
from infra.local.faults.site import FaultSite

__all__ = ["FAULTS", "PRIVATE", "Fault", "FaultSite", "RoundTrip", "effect_window", "get",
           "lanes", "listing", "render", "run_all", "run_fault"]
