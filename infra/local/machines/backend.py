"""Booted instances behind the testbed: what `Testbed` and the supervisor call when a
testbed's instances are machines (`Meta.backend == "machines"`) rather than app processes.

The control plane stays the moto server, and the testbed reads the stack back from it as
for processes; only these change implementation:

- start an instance (`boot`, `boot_stack`): its boot.json from DescribeInstances and
  DescribeInstanceAttribute(userData), then `python -m infra.local.machines.machine`, recorded
  as the instance's process; it is up when its console shows the boot script's "done" line
  (and failed on its "FAILED" line);
- crash its app (`kill_instance`): `systemctl kill -s KILL` inside, and systemd's
  Restart=always brings it back (`start_instance` only waits for that);
- apply a security group (`apply_security_groups`): nftables in the machine's namespace;
- the data path (`dial`): the machine's own address, whatever the rules say: packets are
  dropped (or refused) by the machine's kernel, not by a stand-in;
- clean up (`sweep`): what a killed machine process left behind.

It never imports infra.local.testbed: the testbed is passed in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from infra.aws.compute import security_group_ids
from infra.aws.console_output import DONE, clean, verdict
from infra.errors import UserError
from infra.local import boot as boot_routes
from infra.local.machines import image, imds, machine, network, wheelhouse
from infra.local.processes import alive, log_tail, wait_until
from infra.local.runtime import app_process_name, child_env

BOOT_TIMEOUT = 240.0  # from start to the boot script's last line, on a loaded 2-core box
RESTART_TIMEOUT = 30.0
SG_FILE = "security-groups.nft"
TOOLS = (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"),
         ("nft", "nftables"), ("ip", "iproute2"), ("nsenter", "util-linux"),
         ("mount", "mount"), ("chroot", "coreutils"))
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def why_not() -> str | None:
    """Why this machine cannot boot machines (one line), or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"booted instances need Linux (systemd-nspawn); this is {sys.platform}"
    if os.geteuid() != 0:
        return "booted instances need root (network namespaces, mounts, systemd-nspawn)"
    for tool, package in TOOLS:
        if shutil.which(tool, path=SBIN_PATH) is None:
            return f"no {tool} on this machine (apt-get install {package})"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    with contextlib.suppress(OSError):
        if "overlay" not in Path("/proc/filesystems").read_text():
            subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=10)
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "this kernel has no overlayfs"
    probe = f"{network.PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here ({made.stderr.strip()})"
    return None


def prepare(say: Callable[[str], None]) -> dict:
    """The image and the wheelhouse, built or downloaded when missing. Returns their paths
    and the seconds spent building the image (0.0 when it was cached)."""
    root, seconds = image.ensure(say)
    wheels = wheelhouse.ensure(image.cache_root(), root, say)
    return {"image": str(root), "wheelhouse": str(wheels), "image_seconds": seconds}


# --- start an instance -------------------------------------------------------------------------
def _boot_json(clients, instance_id: str, region: str, prepared: dict) -> dict:
    ec2 = clients.ec2
    reservation = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    instance = reservation["Instances"][0]
    value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")[
        "UserData"].get("Value")
    described = imds.InstanceMetadata.from_instance(
        instance, region=region, user_data=None,
        reservation_id=reservation.get("ReservationId", ""),
        account_id=reservation.get("OwnerId", ""))
    return {
        "instance": {k: v for k, v in asdict(described).items() if k != "user_data"},
        # As DescribeInstanceAttribute returns it: base64 of the bytes RunInstances got.
        "user_data_b64": value,
        "image": prepared["image"],
        "wheelhouse": prepared["wheelhouse"],
    }


def start(testbed, instance_id: str, prepared: dict) -> None:
    """Start the instance's machine process (returns at once; `wait_booted` waits)."""
    meta = testbed.meta
    directory = machine.machine_dir(testbed.runtime_dir, instance_id)
    image.remove_tree(directory)  # a previous boot's overlay and logs
    directory.mkdir(parents=True)
    boot = _boot_json(testbed.clients(), instance_id, meta.region, prepared)
    (directory / machine.BOOT_FILE).write_text(json.dumps(boot, indent=2))
    argv = [sys.executable, "-m", "infra.local.machines.machine", str(testbed.runtime_dir),
            instance_id]
    testbed.processes.start(app_process_name(instance_id), argv, env=child_env())


def console_text(runtime_dir, instance_id: str) -> str:
    try:
        return machine.console_path(runtime_dir, instance_id).read_bytes().decode(
            "utf-8", "replace")
    except OSError:
        return ""


def boot_line(text: str) -> str | None:
    """The boot script's last word on the console: its "done" or "FAILED" line, or None."""
    return verdict(text.replace("\r", "\n").splitlines())


def address_of(runtime_dir, instance_id: str, port: int) -> str | None:
    record = machine.read_record(machine.machine_dir(runtime_dir, instance_id))
    link = record.get("link")
    return f"{link['peer_ip']}:{port}" if link and not record.get("torn_down") else None


def wait_booted(testbed, instance_id: str, timeout: float = BOOT_TIMEOUT) -> tuple[str, float]:
    """Until the boot script's "done" (returns (address, seconds since the machine started)).
    Raises a UserError naming the FAILED line, or the machine process's end, with the
    console's last lines."""
    runtime = testbed.runtime_dir
    port = testbed.settings().app_port
    record_of = testbed.processes.record

    def over() -> bool:
        return (not _running(testbed, instance_id)
                or boot_line(console_text(runtime, instance_id)) is not None)

    started = time.monotonic()
    wait_until(over, timeout, 0.2)
    line = boot_line(console_text(runtime, instance_id))
    directory = machine.machine_dir(runtime, instance_id)
    booted_at = machine.read_record(directory).get("booted_at") or time.time()
    if line and line.startswith(DONE):
        address = address_of(runtime, instance_id, port)
        seconds = round(time.time() - booted_at, 1)
        (directory / "ready.json").write_text(json.dumps({"seconds": seconds, "line": line}))
        return address, seconds
    tail = "\n".join(clean(console_text(runtime, instance_id)).splitlines()[-20:])
    if line:
        why = f"its boot script failed: {line!r}"
    elif time.monotonic() - started >= timeout:
        why = f"its boot script did not finish within {timeout:.0f} s"
    else:
        record = record_of(app_process_name(instance_id))
        why = f"its machine stopped; the machine's log ({record.log if record else '?'}):\n" \
              f"{log_tail(record.log) if record else ''}"
    raise UserError(f"instance {instance_id}: {why}\nthe last lines of its console "
                    f"({machine.console_path(runtime, instance_id)}):\n{tail}")


def boot_stack(testbed, meta, view, prepared: dict, say: Callable[[str], None]) -> None:
    """Boot every instance of the stack at once, wait for each, apply the security groups.
    Fills meta.instances (id -> its address on its veth), not_started, app_ready_seconds."""
    ids = list(view.instance_ids)
    clear_old(testbed.runtime_dir)
    meta.not_started = boot_routes.boot_problems(testbed.clients().ec2, ids)
    for instance_id, why in meta.not_started.items():
        say(f"instance {instance_id}: not booted: {why}")
    booting = [i for i in ids if i not in meta.not_started]
    say(f"instances: booting {len(booting)} machines (systemd-nspawn, cloud-init, the "
        "rendered user data)")
    spawned = time.monotonic()
    for instance_id in booting:
        start(testbed, instance_id, prepared)
    _wait_linked(testbed, booting)  # then the security groups
    port = testbed.settings().app_port
    meta.instances = {i: address_of(testbed.runtime_dir, i, port) or "" for i in ids}
    meta.save(testbed.meta_path)
    sync_security_groups(testbed)
    for instance_id in booting:
        address, seconds = wait_booted(testbed, instance_id)
        say(f"instance {instance_id}: booted to \"done\" in {seconds:.1f}s, app on {address}")
    meta.app_ready_seconds = round(time.monotonic() - spawned, 2)
    meta.save(testbed.meta_path)


def _wait_linked(testbed, ids: list[str]) -> None:
    """Until each machine has its address (its link comes a moment after its start), or
    one of them has stopped."""
    wait_until(lambda: all(address_of(testbed.runtime_dir, i, 1) for i in ids)
               or any(not _running(testbed, i) for i in ids), 30.0, 0.1)


def _running(testbed, instance_id: str) -> bool:
    record = testbed.processes.record(app_process_name(instance_id))
    return bool(record and alive(record.pid))


def boot(testbed, instance_id: str) -> None:
    """Boot one instance (launched later, or started again) and wait for its boot script."""
    prepared = prepare(lambda _m: None)
    start(testbed, instance_id, prepared)
    _wait_linked(testbed, [instance_id])
    address = address_of(testbed.runtime_dir, instance_id, testbed.settings().app_port)
    _record_address(testbed, instance_id, address)
    sync_security_groups(testbed)
    address, _seconds = wait_booted(testbed, instance_id)
    # again: the lifecycle, or another machine's boot, may have saved an older copy meanwhile
    _record_address(testbed, instance_id, address)


_meta_lock = threading.Lock()


def _record_address(testbed, instance_id: str, address: str | None) -> None:
    """Set the instance's address in the testbed's runtime file, read-modify-write under a
    lock (machines boot in parallel threads, and other processes write it too)."""
    if not address:
        return
    with _meta_lock, image.file_lock(testbed.runtime_dir / "meta.lock"):
        meta = testbed.meta
        if meta is not None and meta.instances.get(instance_id) != address:
            meta.instances[instance_id] = address
            meta.save(testbed.meta_path)


def start_instance(testbed, instance_id: str) -> None:
    """`local start-instance` on a machine: when it runs, systemd restarts the app by itself;
    wait for it to answer. When it does not, boot it."""
    if not _running(testbed, instance_id):
        boot(testbed, instance_id)
        return
    address = address_of(testbed.runtime_dir, instance_id, testbed.settings().app_port)
    if not wait_until(lambda: _answers(address), RESTART_TIMEOUT, 0.2):
        raise UserError(f"instance {instance_id}'s app did not answer on {address} within "
                        f"{RESTART_TIMEOUT:.0f} s; `make logs` shows its console")


def _answers(address: str | None) -> bool:
    import requests

    if not address:
        return False
    try:
        return requests.get(f"http://{address}/health", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def kill_instance(testbed, instance_id: str) -> None:
    """Crash the app: `systemctl kill -s KILL` on its unit, inside the machine."""
    try:
        machine.kill_app(testbed.runtime_dir, instance_id)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None


UNREACHABLE = str(network.BLOCK.broadcast_address)  # in the block's blackhole route


def dial(app_address: str, port: int) -> str:
    """Where the load balancer connects for a target port: the machine itself; while it has
    no address yet (booting), an address that the host drops."""
    host = app_address.rsplit(":", 1)[0] if app_address else UNREACHABLE
    return f"{host}:{port}"


# --- apply a security group --------------------------------------------------------------------
def _lb_cidrs(net) -> list[str]:
    lb = net.lb or {}
    subnets = [z["SubnetId"] for z in lb.get("AvailabilityZones", []) if z.get("SubnetId")]
    return [net.subnets[s]["CidrBlock"] for s in subnets if s in net.subnets]


def apply_security_groups(runtime_dir, net, memo: dict) -> list[str]:
    """Each machine's nftables from its instance's security groups, as the control plane
    says now; applied only when they changed (or the machine is new). Returns the ids
    whose rules were applied."""
    lb_groups = set((net.lb or {}).get("SecurityGroups", []))
    cidrs = _lb_cidrs(net)
    applied = []
    for instance_id, instance in net.instances.items():
        directory = machine.machine_dir(runtime_dir, instance_id)
        record = machine.read_record(directory)
        if not record.get("link") or record.get("torn_down"):
            continue
        link = network.Link(**record["link"])
        groups = [net.groups[g] for g in security_group_ids(instance) if g in net.groups]
        ruleset = network.render_security_groups(groups, lb_groups, cidrs, link.host_ip)
        key = (record.get("pid"), link.netns, ruleset)
        if memo.get(instance_id) == key:
            continue
        try:
            network.apply_security_groups(link, ruleset)
        except (RuntimeError, OSError, subprocess.SubprocessError):
            continue  # the machine is going away: the next sync sees it
        (directory / SG_FILE).write_text(ruleset)
        memo[instance_id] = key
        applied.append(instance_id)
    return applied


def sync_security_groups(testbed) -> None:
    from infra.local.mirror import read_all

    # The testbed's clients know their endpoint: no environment to swap around the calls.
    _view, net = read_all(testbed.clients(), testbed.stack, {})
    apply_security_groups(testbed.runtime_dir, net, {})


# --- clean up ----------------------------------------------------------------------------------
def sweep(runtime_dir) -> list[str]:
    return machine.sweep(runtime_dir)


def clear_old(runtime_dir) -> None:
    """Remove earlier runs' machine directories (their consoles and logs), once released."""
    base = Path(runtime_dir) / machine.MACHINES_DIR
    for directory in sorted(base.glob("*")) if base.is_dir() else []:
        record = machine.read_record(directory)
        if not record or record.get("torn_down"):
            image.remove_tree(directory)
