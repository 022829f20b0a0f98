"""The files a grade writes (--out's gradebook, --gradescope's results.json): checked before
the first request, and written so that nothing is lost.

Before anyone is graded, each output path must not be an input (the roster, the scoring
file: same inode, whatever the spelling), must not be a folder, and its folder must take a
new file (a real file is made and removed: as root `os.access` says yes to a read-only
mount). A regular file is replaced atomically (a temp file, then a rename), so a reader
never sees half a gradebook. A device, a FIFO or anything reached through /dev or /proc
(`/dev/stdout`, a pipe) is written through, never replaced: renaming over /dev/stdout
would swap the device for a file. A symlink to a regular file keeps the link and replaces
its target. If the write fails all the same (a full disk, /dev/full), the text still
reaches the user: a file next to the target, else stdout, else the temp folder, and the
caller says where.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from infra.errors import UserError
from infra.grade.display import escape

_THROUGH_PREFIXES = ("/dev/", "/proc/")


def check_output(path: str | Path, flag: str, inputs: list[tuple[str, str | Path]]) -> None:
    """UserError (exit 2) unless `path` can take the output; `inputs` are (flag, path)."""
    p = Path(path)
    name = escape(str(path))
    for in_flag, in_path in inputs:
        if _same_file(p, Path(in_path)):
            raise UserError(f"{flag} {name} is the {in_flag} file itself: writing there would "
                            f"replace it; give {flag} another file name")
    if p.is_dir():
        raise UserError(f"{flag} {name} is a folder: give a file name, e.g. "
                        f"{escape(str(p / ('grades.csv' if flag == '--out' else 'results.json')))}")
    if writes_through(p):
        if not os.access(p, os.W_OK):
            raise UserError(f"{flag} {name}: cannot write to it (permission denied)")
        return
    folder = _real(p).parent
    if not folder.is_dir():
        raise UserError(f"{flag} {name}: the folder {escape(str(folder))} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{p.name[:40]}.", suffix=".check")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag} {name}: cannot write in {escape(str(folder))} "
                        f"({exc.strerror or exc})") from None


def writes_through(path: Path) -> bool:
    """Whether `path` is written in place (a device, a FIFO, /dev/stdout), not replaced."""
    try:
        mode = os.stat(path).st_mode  # follows links: what a write would reach
    except OSError:
        return False  # nothing there yet (or a dangling link): a new regular file
    if not stat.S_ISREG(mode):
        return True
    # /dev/stdout -> /proc/self/fd/1 -> a file the shell opened: the shell's file, in place
    return any(str(p).startswith(_THROUGH_PREFIXES)
               for p in (Path(os.path.abspath(path)), Path(os.path.realpath(path))))


def is_stdout(path: str | Path) -> bool:
    """Whether writing to `path` lands on this process's stdout (`--out /dev/stdout`)."""
    try:
        here, there = os.fstat(sys.stdout.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def write_output(path: str | Path, text: str, what: str) -> str | None:
    """Write `text` to `path`. None when it went there; else a line saying where it went."""
    p = Path(path)
    try:
        if writes_through(p):
            with open(p, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        else:
            _replace(_real(p), text)
        return None
    except OSError as exc:
        failed = f"cannot write {escape(str(path))} ({exc.strerror or exc})"
    return f"{failed}: {rescue(p, text, what)}"


def rescue(p: Path, text: str, what: str) -> str:
    """Put `text` somewhere the user will find it; the words that say where."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    spare = f"{p.name or 'output'}.unsaved-{stamp}"
    places: list[Path | None] = []
    if not writes_through(p):
        places.append(_real(p).parent / spare)
    if not is_stdout(p):
        places.append(None)  # stdout
    places.append(Path(tempfile.gettempdir()) / spare)
    for place in places:
        try:
            if place is None:
                sys.stdout.write(text)
                sys.stdout.flush()
                return f"{what} is on stdout instead"
            _replace(place, text)
            return f"{what} is in {escape(str(place))} instead"
        except OSError:
            continue
    return f"{what} could not be written anywhere (stdout and {tempfile.gettempdir()} failed too)"


def _replace(target: Path, text: str) -> None:
    """Atomically: a new file next to `target`, then a rename over it (same permissions)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666  # less the umask, as open() would make it
    tmp = target.with_name(f".{target.name[:60]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if os.path.exists(target):
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _real(p: Path) -> Path:
    """A symlink's final target (the link itself is kept); any other path as it is."""
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # same inode: a hard link or a symlink too
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
