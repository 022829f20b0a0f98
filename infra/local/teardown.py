"""`local down`: stop every process of a testbed, destroy its stack in moto, stop moto, and
say what is left. It works from the pid files alone, so also after the command that ran `up`
was killed; Ctrl-C hurries it and never splits it (infra/local/interrupts.py)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from infra.local import motoserver
from infra.local.processes import is_ours, listened_by
from infra.local.runtime import MACHINES, Meta, split_address


class Teardown:
    """One `down` of `testbed` (an infra.local.testbed.Testbed)."""

    def __init__(self, testbed):
        self.testbed = testbed
        self.interrupts = testbed.interrupts
        self.processes = testbed.processes

    def run(self) -> dict:
        with self.interrupts.cleaning():
            meta = self.testbed.meta
            records = self.processes.records()
            groups = {r.pid for r in records}
            report: dict = {"stopped": [], "destroyed": False, "listening": [], "left": [],
                            "interrupted": False}
            # Everything but moto stops in parallel while the stack is destroyed: that needs moto.
            others = [r.name for r in records if r.name != motoserver.NAME]
            signalled = self.processes.signal_many(others)
            try:
                with self.interrupts.cuttable():
                    report["destroyed"] = self._destroy_stack(meta)
            except KeyboardInterrupt:
                report["interrupted"] = True
                self.testbed.progress("interrupted: not destroying the stack in moto (its "
                                      "resources go with it); stopping every process now")
            finally:
                report["stopped"] += self.processes.wait_stopped(signalled)
            report["stopped"] += self.processes.stop_all()
            self._sweep_machines(meta)
            left = [r for r in self.processes.records() if is_ours(r)]
            report["left"] = [r.describe() for r in left]
            report["left_pids"] = [r.pid for r in left]
            report["interrupted"] = report["interrupted"] or self.interrupts.hurry.is_set()
            self._forget(meta, keep_meta=bool(left))
            report["listening"] = _still_listening(meta, groups)
            return report

    def _destroy_stack(self, meta: Meta | None) -> bool:
        bed = self.testbed
        if not (meta and meta.endpoint and motoserver.responds(meta.endpoint)):
            return False
        bed.progress(f"destroying stack {bed.stack} in the moto server with infra.aws.stack")
        from infra.aws.stack import Stack

        Stack(bed.clients_for(meta), bed.settings(), progress=bed.sub_progress).destroy()
        return True

    def _sweep_machines(self, meta: Meta | None) -> None:
        runtime_dir = self.testbed.runtime_dir
        if (runtime_dir / "machines").is_dir():  # what a killed machine left
            from infra.local.machines import backend as machines

            machines.sweep(runtime_dir)
            if meta is not None and meta.backend == MACHINES:
                meta.instances = {}  # gone with their namespaces: never probe them

    def _forget(self, meta: Meta | None, keep_meta: bool) -> None:
        bed = self.testbed
        state_file = Path(meta.state_file) if meta and meta.state_file else bed.state_file()
        with contextlib.suppress(FileNotFoundError):
            # The resources it describes lived in the moto server, which is gone now.
            state_file.unlink()
        if not keep_meta:  # else keep it: the next `down` needs to find what still runs
            with contextlib.suppress(FileNotFoundError):
                bed.meta_path.unlink()


def _still_listening(meta: Meta | None, groups: set[int]) -> list[str]:
    """The testbed's addresses where something of ours still accepts connections: a program
    in one of the process groups the testbed started (`groups`), or one `ss` cannot name. A
    port the testbed let go may at once be taken by another program (another test's server,
    on a busy machine, in a process older than `down`): that is no leftover of this testbed."""
    if meta is None:
        return []
    addresses = [meta.lb, meta.admin, meta.endpoint.removeprefix("http://"),
                 *meta.instances.values()]
    return [a for a in filter(None, addresses) if listened_by(*split_address(a), groups)]
