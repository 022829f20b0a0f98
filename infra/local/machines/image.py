"""The booted instances' image: a Debian bookworm root filesystem, built once by debootstrap
and cached outside the checkout (`$SEEDLB_CACHE`, else `~/.cache/seed-lb`).

Its recipe (suite, packages, the steps after debootstrap) names the cache directory, so a
change of recipe builds a new image beside the old one. A build goes to a temporary
directory and is renamed into place only when complete; an interrupted one (Ctrl-C, kill)
leaves nothing: debootstrap's process group is killed, what it mounted inside the tree is
unmounted, the tree removed. Concurrent builders wait for one another (a lock file).

Machines never write to it: each boot mounts a fresh overlay over it (machines/machine.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("SEEDLB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What an Amazon Linux 2023 instance brings that the boot script uses: systemd, cloud-init,
# curl, Python 3.11 with venv (ensurepip's pip); iproute2 for cloud-init's network report.
# python3-cffi-backend: debootstrap does not resolve the virtual package cloud-init's
# python3-cryptography needs (python3-cffi-backend-api-*), and leaves it unconfigured.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "cloud-init", "curl", "python3",
            "python3-venv", "iproute2", "python3-cffi-backend")
CLOUD_INIT_UNITS = ("cloud-init-local.service", "cloud-init.service", "cloud-config.service",
                    "cloud-final.service")
# Timers and jobs a machine that lives for minutes never needs.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
          "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer")
RECIPE_VERSION = 1  # bump when the steps below change
STAMP = ".seed-lb-image.json"


def cache_root() -> Path:
    return Path(os.environ.get("SEEDLB_CACHE") or Path.home() / ".cache" / "seed-lb")


def recipe() -> dict:
    return {"suite": SUITE, "packages": list(PACKAGES), "units": list(CLOUD_INIT_UNITS),
            "masked": list(MASKED), "version": RECIPE_VERSION, "arch": os.uname().machine}


def image_dir(root: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return (root or cache_root()) / "images" / f"{SUITE}-{digest}"


def rootfs(root: Path | None = None) -> Path:
    return image_dir(root) / "rootfs"


def cached(root: Path | None = None) -> bool:
    return (rootfs(root) / STAMP).is_file()


def stamp(root: Path | None = None) -> dict:
    try:
        return json.loads((rootfs(root) / STAMP).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Held by one process (and thread) at a time: flock on `path`, made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(Path(path).resolve())
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def remove_tree(path: Path) -> None:
    """Unmount what is mounted inside, then delete (never across a mount)."""
    unmount_all(path)
    shutil.rmtree(path, ignore_errors=True)


def ensure(say: Callable[[str], None] = print, root: Path | None = None) -> tuple[Path, float]:
    """The image's root filesystem, built if missing. Returns (path, seconds spent building:
    0.0 when cached)."""
    directory = image_dir(root)  # the recipe's digest: worked out once
    final = directory / "rootfs"
    if cached(root):
        return final, 0.0
    with file_lock(directory.parent / ".lock"):
        if cached(root):  # another builder finished while we waited
            return final, 0.0
        started = time.monotonic()
        work = directory.with_name(f".build-{directory.name}-{os.getpid()}")
        remove_tree(work)
        try:
            target = work / "rootfs"
            say(f"image: debootstrap {SUITE} ({', '.join(PACKAGES)}) into {directory}; "
                "once, then cached")
            _debootstrap(target, root or cache_root())
            _check_configured(target)
            say(f"image: debootstrap done ({time.monotonic() - started:.0f}s); configuring")
            _configure(target)
            seconds = time.monotonic() - started
            (target / STAMP).write_text(json.dumps({**recipe(), "built": time.time(),
                                                     "seconds": round(seconds, 1)}))
            unmount_all(work)
            remove_tree(directory)
            directory.parent.mkdir(parents=True, exist_ok=True)
            work.rename(directory)
        finally:
            remove_tree(work)  # a failed or interrupted build leaves nothing
        say(f"image: built in {seconds:.0f}s: {final}")
        return final, seconds


def _debootstrap(target: Path, cache: Path) -> None:
    """debootstrap in its two stages, so that dpkg skips its fsyncs in the second (a
    throw-away build: it halves the time on a busy disk)."""
    debs = cache / "debs"  # downloaded packages: a rebuild after a recipe change is quicker
    debs.mkdir(parents=True, exist_ok=True)
    log = cache / "images" / "debootstrap.log"  # kept after a failed build, for its reason
    target.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    _run_logged(["debootstrap", "--foreign", "--variant=minbase",
                 f"--include={','.join(PACKAGES)}", f"--cache-dir={debs}", SUITE,
                 str(target), MIRROR], log)
    (target / "etc/dpkg/dpkg.cfg.d/seed-lb-unsafe-io").write_text("force-unsafe-io\n")
    _run_logged(["chroot", str(target), "/debootstrap/debootstrap", "--second-stage"], log)
    (target / "etc/dpkg/dpkg.cfg.d/seed-lb-unsafe-io").unlink()


def _run_logged(argv: list[str], log: Path) -> None:
    """Run a build step in its own process group, output appended to `log`; killed with its
    children on Ctrl-C (the caller then removes the half-built tree)."""
    with open(log, "ab") as out:
        out.write(f"--- {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"image: {argv[0]} {argv[1]} failed (exit {code}); the end of "
                           f"{log}:\n" + "\n".join(tail))


def _check_configured(target: Path) -> None:
    """debootstrap exits 0 with packages it could not configure (it says so in its log)."""
    result = subprocess.run(["chroot", str(target), "dpkg", "--audit"], capture_output=True,
                            text=True)
    if result.stdout.strip() or result.returncode != 0:
        raise RuntimeError("image: debootstrap left packages unconfigured:\n"
                           + (result.stdout or result.stderr).strip()[-1500:])


def _configure(target: Path) -> None:
    def chroot(*argv: str) -> None:
        result = subprocess.run(["chroot", str(target), *argv], capture_output=True, text=True,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        if result.returncode != 0:
            raise RuntimeError(f"image: {' '.join(argv)} failed: {result.stderr.strip()}")

    # The Debian package enables cloud-init's units with deb-systemd-helper, which a
    # debootstrap chroot skips; the generator then finds a datasource and nothing to start.
    chroot("systemctl", "enable", *CLOUD_INIT_UNITS)
    chroot("systemctl", "mask", *MASKED)
    chroot("apt-get", "clean")
    # Each boot gets its own machine id (systemd-nspawn gives one to an empty file).
    (target / "etc" / "machine-id").write_text("")
