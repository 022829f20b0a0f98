"""The seed: one value per instance, the same for every thread and every worker process.

gunicorn forks its workers from one master, and each fork has its own copy of ordinary
memory, so a plain attribute would let worker A keep 0 after worker B took a POST. The seed
therefore lives in a small shared memory map (MAP_SHARED over an unlinked temporary file)
that is created before the fork (`python -m app` preloads the app in the master), so every
worker, including one the master restarts later, sees the same bytes.

Locking: a threading.Lock for the threads of one process, plus a POSIX record lock
(fcntl.lockf) on the same temporary file between processes. A record lock belongs to its
process and the kernel drops it when the process dies, so a worker killed in the middle of a
write cannot leave the others blocked forever (a multiprocessing semaphore would).

Durability: with a seed file, a POST writes the file first (temp file, fsync, rename, fsync
of the directory) and only then the shared memory, under the same lock, so the value a POST
returned is on disk, and the file and memory agree on which of two racing POSTs came last.
At start-up a missing file means 0; an unreadable or corrupt one is logged in one line, kept
aside as `<file>.corrupt`, and the seed starts at 0, the assignment's initial value.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
import struct
import tempfile
import threading

from .parsing import MAX_DIGITS

_HEADER = struct.Struct("<I")  # length of the decimal text that follows
_SIZE = mmap.PAGESIZE * 2  # >= header + sign + MAX_DIGITS digits
_VALID = re.compile(r"-?[0-9]+")

log = logging.getLogger(__name__)


class SeedStoreError(RuntimeError):
    """The seed could not be stored (the seed file could not be written)."""


class SeedStore:
    """`get_text()` the seed as decimal text, `set(value)` it; safe across threads and forks."""

    def __init__(self, seed_file: str | os.PathLike | None = None,
                 logger: logging.Logger | None = None):
        assert _HEADER.size + 1 + MAX_DIGITS <= _SIZE
        self.log = logger or log
        self.path = os.path.abspath(seed_file) if seed_file else None
        self._thread_lock = threading.Lock()
        self._backing = tempfile.TemporaryFile(prefix="seed-lb-store-")
        self._backing.truncate(_SIZE)
        self._memory = mmap.mmap(self._backing.fileno(), _SIZE)  # MAP_SHARED: seen by forks
        self._write_memory(str(self._load()))

    # -- reading and writing -------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, exclusive: bool):
        with self._thread_lock:
            fd = self._backing.fileno()
            fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)

    def _write_memory(self, text: str) -> None:
        data = text.encode("ascii")
        self._memory[_HEADER.size:_HEADER.size + len(data)] = data
        self._memory[:_HEADER.size] = _HEADER.pack(len(data))

    def get_text(self) -> str:
        """The seed as the exact decimal text GET returns: `100`, `-7`, `0`."""
        with self._locked(exclusive=False):
            (length,) = _HEADER.unpack_from(self._memory)
            return self._memory[_HEADER.size:_HEADER.size + length].decode("ascii")

    def get(self) -> int:
        return int(self.get_text())

    def set(self, value: int) -> str:
        """Store `value` (on disk first if there is a seed file); return its decimal text.

        Raises SeedStoreError, leaving the seed unchanged, if the seed file cannot be written.
        """
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"the seed is an int, not {type(value).__name__}")
        text = str(value)
        if len(text.lstrip("-")) > MAX_DIGITS:
            raise ValueError(f"the seed has more than {MAX_DIGITS} digits")
        with self._locked(exclusive=True):
            if self.path:
                try:
                    self._persist(text)
                except OSError as err:
                    raise SeedStoreError(f"could not write the seed file {self.path}: {err}") \
                        from err
            self._write_memory(text)
        return text

    def check(self) -> str | None:
        """None when the store works (for /health), else what is wrong."""
        try:
            self.get_text()
        except Exception as err:  # health must answer, whatever broke
            return f"the shared seed cannot be read: {err}"
        if self.path and not os.access(os.path.dirname(self.path), os.W_OK | os.X_OK):
            return f"the seed file's directory {os.path.dirname(self.path)} is not writable"
        return None

    def close(self) -> None:
        self._memory.close()
        self._backing.close()

    # -- the seed file -------------------------------------------------------------------

    def _persist(self, text: str) -> None:
        directory, name = os.path.split(self.path)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: readers see the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # makes the rename itself survive a power cut
        finally:
            os.close(dir_fd)

    def _load(self) -> int:
        if not self.path:
            self.log.info("seed: in memory only (set SEED_FILE to keep it across restarts)")
            return 0
        directory, name = os.path.split(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            self.log.error("seed: cannot create the seed file's directory %s (%s); "
                           "starting at 0, and POSTs will fail until it exists", directory, err)
            return 0
        self._remove_stale_temps(directory, name)
        try:
            with open(self.path, "rb") as f:
                raw = f.read(_SIZE + 1)
        except FileNotFoundError:
            self.log.info("seed: no seed file %s yet; starting at 0", self.path)
            return 0
        except OSError as err:
            self.log.error("seed: cannot read the seed file %s (%s); starting at 0",
                           self.path, err)
            return 0
        problem = _problem_with(raw)
        if problem is None:
            value = int(raw.decode("ascii").strip())
            self.log.info("seed: restored %s from %s",
                          value if len(raw) < 40 else f"a {len(raw.strip())}-digit seed",
                          self.path)
            return value
        kept = self.path + ".corrupt"
        try:
            os.replace(self.path, kept)
            where = f"the bad file is kept as {kept}"
        except OSError as err:
            where = f"the bad file could not be moved aside ({err})"
        self.log.error("seed: the seed file %s is corrupt (%s); starting at 0 and %s",
                       self.path, problem, where)
        return 0

    def _remove_stale_temps(self, directory: str, name: str) -> None:
        # Left behind by a crash between mkstemp and rename; never the real file.
        try:
            leftovers = [e for e in os.listdir(directory)
                         if e.startswith(f".{name}.") and e.endswith(".tmp")]
        except OSError:
            return
        for entry in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))


def _problem_with(raw: bytes) -> str | None:
    """Why `raw` (a seed file's bytes) is not a seed, or None if it is one."""
    if len(raw) > _SIZE:
        return "it is too large to be a seed"
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return "it is not ASCII text"
    if not text:
        return "it is empty"
    if not _VALID.fullmatch(text):
        return f"{text[:30]!r} is not an integer"
    if len(text.lstrip("-")) > MAX_DIGITS:
        return f"it has more than {MAX_DIGITS} digits"
    return None
