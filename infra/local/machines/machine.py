"""One booted instance: `python -m infra.local.machines.machine RUNTIME_DIR INSTANCE_ID`.

The process the testbed records as the instance's (pid file `app-<id>`, like an app
process), and the owner of everything the machine uses:

1. its network (machines/network.py): a namespace and a veth /30, nftables inside;
2. its IMDS and its wheelhouse (machines/imds.py), on the host's end of the veth;
3. its disk: a fresh overlay over the cached image (machines/image.py), with the few files
   a boot on this testbed needs (`BOOT_FILES`: cloud-init's datasource, pip.conf, the `dnf`
   shim);
4. the machine itself: `systemd-nspawn --boot`, its console (what the machine prints)
   written to `console.log`, which moto's GetConsoleOutput returns (infra/local/motohook.py).

On SIGTERM, SIGQUIT, SIGINT or SIGHUP it powers the machine off (a second at most, then
SIGKILL), and removes the overlay, the namespace and the veth. What a SIGKILL of this
process leaves, `sweep()` removes from the record it keeps (`machine.json`).

What the boot reads comes from the control plane, written by the testbed into `boot.json`
before it starts this: the instance as DescribeInstances reports it and its user data as
DescribeInstanceAttribute returns it, byte for byte what RunInstances was given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.config import PROJECT
from infra.local.machines import cgroups, image, imds, network

MACHINES_DIR = "machines"
BOOT_FILE = "boot.json"
RECORD = "machine.json"
CONSOLE = "console.log"
IMDS_LOG = "imds.log"
SERVICE = f"{PROJECT}.service"  # the unit the user data installs (infra/aws/templates)
POWEROFF_SECONDS = 1.0  # then SIGKILL: the testbed's clean-up gives its processes 3 s

# The one line the boot script runs with dnf (infra/aws/templates/user_data.sh); the shim
# accepts exactly it (tests/aws/test_userdata.py keeps the two the same).
DNF_LINE = "install -y --setopt=retries=10 python3.11 python3.11-pip"
DNF_SHIM = f"""#!/bin/sh
# seed-lb testbed: Amazon Linux 2023's dnf, for the boot script's one install line only
# (docs/testbed.md). This machine is Debian: python3.11 and its venv are in the image.
echo "$(date -u +%FT%TZ) dnf $*" >> "${{SEEDLB_DNF_LOG:-/var/log/seed-lb-dnf-shim.log}}"
if [ "$*" = "{DNF_LINE}" ]; then
  echo "dnf (seed-lb testbed shim): python3.11 and python3.11-pip: already installed"
  exit 0
fi
echo "dnf (seed-lb testbed shim): refusing 'dnf $*': only 'dnf {DNF_LINE}' is known" >&2
exit 1
"""
# cloud-init identifies EC2 by the platform (DMI, or a Xen hypervisor's UUID starting with
# "ec2"), then sends an IMDSv2 token with every request. A container shows no DMI and no
# /sys/hypervisor, so cloud-init would take the platform for unknown and ask without a
# token, which the IMDS (HttpTokens required) refuses. Before cloud-init starts, this puts
# a Xen-style /sys/hypervisor/uuid in the machine's view of /sys: a tmpfs over /sys that
# holds the real sysfs directories (bind mounts) and that one file. Nothing else changes.
PLATFORM_SCRIPT = """#!/bin/sh
# seed-lb testbed (docs/testbed.md): /sys/hypervisor/uuid as a Xen-based EC2 instance has it.
set -eu
new=/run/seed-lb/sys
mount --make-rprivate /
mkdir -p "$new"
mount -t tmpfs -o mode=0755,size=64k seed-lb-sys "$new"
for entry in /sys/*; do
  name=${entry##*/}
  mkdir "$new/$name"
  mount --rbind "$entry" "$new/$name"
done
mkdir "$new/hypervisor"
cp /etc/seed-lb/hypervisor-uuid "$new/hypervisor/uuid"
mount --move "$new" /sys
"""
PLATFORM_UNIT = """[Unit]
Description=seed-lb testbed: the EC2 platform id that cloud-init reads
DefaultDependencies=no
Before=cloud-init-local.service sysinit.target
After=systemd-remount-fs.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/seed-lb-ec2-platform
"""
# cloud-init's Ec2 datasource (init-local stage, on EC2) asks DHCP for an address first;
# the host configures the veth and no DHCP server answers: give up after 2 s, not 60.
DHCLIENT_CONF = """# seed-lb testbed: the host configures eth0; no DHCP server answers on the veth.
timeout 2;
retry 1;
"""
CLOUD_CFG = """\
# seed-lb testbed (docs/testbed.md): cloud-init reads the user data from the IMDS at
# 169.254.169.254 with its Ec2 datasource, as on EC2. The network is set up by the host.
datasource_list: [Ec2, None]
datasource:
  Ec2:
    strict_id: false
    metadata_urls: ["http://169.254.169.254"]
    max_wait: 120
    timeout: 5
network:
  config: disabled
# Debian's minimal image has no en_US locale to set (AL2023 has), and no ssh server to key.
locale: C.UTF-8
ssh_genkeytypes: []
"""


def machine_dir(runtime_dir: str | Path, instance_id: str) -> Path:
    return Path(runtime_dir).resolve() / MACHINES_DIR / instance_id


def console_path(runtime_dir: str | Path, instance_id: str) -> Path:
    return machine_dir(runtime_dir, instance_id) / CONSOLE


def pip_conf(host_ip: str, port: int) -> str:
    return ("[global]\n"
            "# seed-lb testbed: the wheelhouse on the host's end of the veth, and no index\n"
            "no-index = true\n"
            f"find-links = http://{host_ip}:{port}/\n"
            f"trusted-host = {host_ip}\n")


def hypervisor_uuid(instance_id: str) -> str:
    """A Xen UUID as EC2 gives it: "ec2" and then hex, the same for the same instance."""
    h = "ec2" + hashlib.sha256(instance_id.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def boot_files(host_ip: str, wheel_port: int, instance_id: str) -> dict[str, tuple[str, int]]:
    """Path in the machine -> (content, mode): what a boot on this testbed adds to the image."""
    return {
        "etc/cloud/cloud.cfg.d/90-seed-lb.cfg": (CLOUD_CFG, 0o644),
        "etc/pip.conf": (pip_conf(host_ip, wheel_port), 0o644),
        "usr/local/bin/dnf": (DNF_SHIM, 0o755),
        "usr/local/sbin/seed-lb-ec2-platform": (PLATFORM_SCRIPT, 0o755),
        "etc/systemd/system/seed-lb-ec2-platform.service": (PLATFORM_UNIT, 0o644),
        "etc/seed-lb/hypervisor-uuid": (hypervisor_uuid(instance_id) + "\n", 0o644),
        "etc/dhcp/dhclient.conf": (DHCLIENT_CONF, 0o644),
    }


# Symlinks a boot adds: the platform unit, enabled.
BOOT_LINKS = {"etc/systemd/system/sysinit.target.wants/seed-lb-ec2-platform.service":
              "/etc/systemd/system/seed-lb-ec2-platform.service"}


def read_record(directory: Path) -> dict:
    try:
        return json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(directory: Path, record: dict) -> None:
    tmp = directory / f"{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(directory / RECORD)


class Stop(Exception):
    """A signal asked this machine to stop."""


class Machine:
    def __init__(self, runtime_dir: str | Path, instance_id: str):
        self.dir = machine_dir(runtime_dir, instance_id)
        self.instance_id = instance_id
        self.boot = json.loads((self.dir / BOOT_FILE).read_text())
        self.root = self.dir / "root"
        self.record: dict = {"instance_id": instance_id, "pid": os.getpid(),
                             "root": str(self.root), "torn_down": False}
        self.link: network.Link | None = None
        self.nspawn: subprocess.Popen | None = None
        self.servers: list = []

    def _say(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.instance_id}: {message}", flush=True)

    def _save(self) -> None:
        _write_record(self.dir, self.record)

    def run(self) -> int:
        try:
            self._start()
            code = self.nspawn.wait()
            self._say(f"the machine stopped (systemd-nspawn exit {code})")
            return 0 if code == 0 else 1
        except Stop:
            self._say("asked to stop: powering the machine off")
            return 0
        finally:
            self.teardown()

    def _start(self) -> None:
        with _signals_deferred():  # never a namespace without its record
            self.link = network.create()
            self.record["link"] = self.link.to_dict()
            self._save()
        meta = imds.InstanceMetadata.from_boot(self.boot)
        metadata = imds.MetadataServer((self.link.host_ip, 0), meta, self.dir / IMDS_LOG)
        wheels = imds.WheelhouseServer((self.link.host_ip, 0), Path(self.boot["wheelhouse"]))
        self.servers = [metadata, wheels]
        imds.serve_in_background(metadata, f"imds {self.instance_id}")
        imds.serve_in_background(wheels, f"wheelhouse {self.instance_id}")
        network.install_imds_redirect(self.link, metadata.port)
        self.record.update(imds_port=metadata.port, wheelhouse_port=wheels.port)
        with _signals_deferred():
            self._mount(Path(self.boot["image"]))
        files = boot_files(self.link.host_ip, wheels.port, self.instance_id)
        for relative, (content, mode) in files.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
        for relative, target in BOOT_LINKS.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(target)
        argv = ["systemd-nspawn", "--quiet", "--boot", f"--directory={self.root}",
                f"--machine={self.link.netns}",
                f"--network-namespace-path={network.NETNS_DIR / self.link.netns}",
                "--register=no", "--resolv-conf=off", "--timezone=off",
                "--link-journal=no", "--console=read-only"]
        with _signals_deferred():
            groups = cgroups.make(self.link.netns)
            self.record["cgroups"] = [str(g) for g in groups]
            self._save()
        if groups:  # no systemd on the host: the machine's own cgroup, made here
            argv = ["sh", "-c", 'for g in $SEEDLB_CGROUPS; do echo $$ > "$g/cgroup.procs" '
                    '|| exit 1; done; exec "$@"', "sh", *argv[:1], "--keep-unit", *argv[1:]]
        # Not with signals blocked: the machine would inherit the mask.
        with open(self.dir / CONSOLE, "ab", buffering=0) as console:
            self.nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=sys.stderr,
                env={**os.environ, "SEEDLB_CGROUPS": " ".join(str(g) for g in groups)})
        with _signals_deferred():
            self.record.update(nspawn_pid=self.nspawn.pid, booted_at=time.time())
            self._save()
        self._say(f"booting on {self.link.peer_ip} (netns {self.link.netns}, IMDS "
                  f"{self.link.host_ip}:{metadata.port}, wheelhouse {self.link.host_ip}:"
                  f"{wheels.port})")

    def _mount(self, lower: Path) -> None:
        upper, work = self.dir / "upper", self.dir / "work"
        for path in (upper, work, self.root):
            path.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        network.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)])
        self.record["mounted"] = True
        self._save()

    def teardown(self) -> None:
        """Power off (briefly), then remove everything; signals no longer interrupt it."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if self.nspawn is not None and self.nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.nspawn.terminate()  # the machine's init powers off (SIGRTMIN+3)
            try:
                self.nspawn.wait(POWEROFF_SECONDS)
            except subprocess.TimeoutExpired:
                if self.link:
                    network.kill_netns_processes(self.link.netns)
                self.nspawn.kill()
                self.nspawn.wait()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
        release(self.dir, self.record)


def release(directory: Path, record: dict) -> None:
    """Remove what a machine's record says it holds: processes in its namespace, its
    mounts, its namespace and veth, its overlay's directories. Keeps console.log and the
    logs; safe to call again."""
    link = network.Link(**record["link"]) if record.get("link") else None
    pid = record.get("nspawn_pid")
    if pid and _is_nspawn(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if link is not None:
        network.kill_netns_processes(link.netns)
    image.unmount_all(directory)
    if link is not None:
        network.destroy(link)
    for group in record.get("cgroups", []):
        cgroups.remove(Path(group))
    for sub in ("root", "upper", "work"):
        if not image.mounts_under(directory / sub):
            image.remove_tree(directory / sub)
    record["torn_down"] = True
    with contextlib.suppress(OSError):
        _write_record(directory, record)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGHUP)
@contextlib.contextmanager
def _signals_deferred():
    """A stop signal waits until what is inside is done (and recorded)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _is_nspawn(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn"
    except OSError:
        return False


def sweep(runtime_dir: str | Path) -> list[str]:
    """Release every machine of this runtime directory that was not torn down (its process
    was SIGKILLed). Returns the instance ids it released."""
    released = []
    base = Path(runtime_dir).resolve() / MACHINES_DIR
    for directory in sorted(base.glob("*")) if base.is_dir() else []:
        record = read_record(directory)
        if not record or record.get("torn_down"):
            continue
        owner = record.get("pid")
        if owner and _alive_machine_process(owner, directory.name):
            continue  # still running: its own clean-up does it
        release(directory, record)
        released.append(directory.name)
    network.unguard_block_if_idle()  # every process of the testbed has stopped by now
    return released


def _alive_machine_process(pid: int, instance_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"infra.local.machines.machine" in cmdline and instance_id.encode() in cmdline


# --- inside a running machine --------------------------------------------------------------
def init_pid(runtime_dir: str | Path, instance_id: str) -> int | None:
    """The host pid of the machine's init (pid 1 inside), or None."""
    record = read_record(machine_dir(runtime_dir, instance_id))
    if not record.get("link") or record.get("torn_down"):
        return None
    for pid in network.netns_processes(record["link"]["netns"]):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
            if nspid and nspid.group(1).split()[-1] == "1" and len(nspid.group(1).split()) > 1:
                return pid
    return None


def inside(runtime_dir: str | Path, instance_id: str, argv: list[str],
           timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run a command inside the machine (all its namespaces), as root there."""
    pid = init_pid(runtime_dir, instance_id)
    if pid is None:
        raise RuntimeError(f"instance {instance_id}'s machine is not running")
    return subprocess.run(["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc",
                           "--net", "--pid", "--", *argv],
                          capture_output=True, text=True, timeout=timeout)


def unit_state(runtime_dir: str | Path, instance_id: str, unit: str = SERVICE) -> dict:
    """systemd's view of a unit in the machine: MainPID, NRestarts, ActiveState, SubState."""
    result = inside(runtime_dir, instance_id, [
        "systemctl", "show", "--property=MainPID,NRestarts,ActiveState,SubState", unit])
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def kill_app(runtime_dir: str | Path, instance_id: str, unit: str = SERVICE) -> None:
    """`systemctl kill -s KILL` the app's unit: a crash, which Restart=always answers."""
    result = inside(runtime_dir, instance_id, ["systemctl", "kill", "-s", "KILL", unit])
    if result.returncode != 0:
        raise RuntimeError(f"systemctl kill in {instance_id}: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m infra.local.machines.machine RUNTIME_DIR INSTANCE_ID "
              "(started by the testbed)", file=sys.stderr)
        return 2
    machine = Machine(args[0], args[1])

    def stop(signum, frame):
        raise Stop

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    return machine.run()


if __name__ == "__main__":
    sys.exit(main())
