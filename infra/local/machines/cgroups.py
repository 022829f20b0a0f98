"""A booted machine's own cgroups, where no systemd runs on the host to give it a scope.

Without one, every machine's systemd would share the host's root cgroup and see, and try to
kill, the other machines' services (machine.py makes them before the boot and removes them
after; testboot.py looks for leftovers).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "seed-lb"


def make(name: str) -> list[Path]:
    """A cgroup of its own for a machine, in each hierarchy its systemd uses, when no
    systemd runs on the host (with one, systemd-nspawn asks it for a scope: none made)."""
    if Path("/run/systemd/system").is_dir():
        return []
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # the unified hierarchy alone
        hierarchies = [CGROUP_ROOT]
    else:  # hybrid (systemd's name=systemd v1 and the unified v2) or legacy
        hierarchies = [CGROUP_ROOT / h for h in ("systemd", "unified")
                       if (CGROUP_ROOT / h / "cgroup.procs").exists()]
    made = []
    for hierarchy in hierarchies:
        group = hierarchy / CGROUP_PARENT / name
        remove(group)  # a killed machine's, emptied since
        group.mkdir(parents=True, exist_ok=True)
        made.append(group)
    return made


def remove(group: Path) -> None:
    """Remove a cgroup and what the machine's systemd made inside it, deepest first."""
    if not group.is_dir():
        return
    for path in sorted((p for p in group.rglob("*") if p.is_dir()),
                       key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        group.rmdir()
    with contextlib.suppress(OSError):
        group.parent.rmdir()  # seed-lb/, when no other machine has a cgroup there


def leftovers() -> list[str]:
    """The machines' cgroups still there (none, once every machine is torn down)."""
    found = []
    for hierarchy in (CGROUP_ROOT, CGROUP_ROOT / "systemd", CGROUP_ROOT / "unified"):
        parent = hierarchy / CGROUP_PARENT
        if parent.is_dir():
            found += [str(p) for p in parent.iterdir() if p.is_dir()]
    return found
