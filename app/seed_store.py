"""The seed, one value for every thread and worker: a shared memory map over a file.
How it is shared, locked and kept on disk: docs/app.md, "Concurrency" and "Durability"."""

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
import zlib

from .parsing import MAX_DIGITS

# A write count (odd during a write), the text's length and CRC-32; then the text.
_HEADER = struct.Struct("<QII")
_SIZE = mmap.PAGESIZE * 2  # >= header + sign + MAX_DIGITS digits
_VALID = re.compile(r"-?[0-9]+")
_WRITER, _VALUE = 0, 1  # the bytes of the map file that the two record locks cover

log = logging.getLogger(__name__)
File = str | os.PathLike | None
Log = logging.Logger | None


class SeedStoreError(RuntimeError):
    """The seed could not be stored (the seed file could not be written)."""


class SeedStore:
    """`get_text()` the seed as decimal text, `set(value)` it; safe across threads and workers.
    Made by `private`, `publish` or `attach` (docs/app.md, "Concurrency")."""

    def __init__(self, backing, map_path: str | None, seed_file: File, logger: Log = None):
        # `backing`: the open map file
        self.log = logger or log
        self.path = os.path.abspath(seed_file) if seed_file else None
        self._writer_lock, self._value_lock = threading.Lock(), threading.Lock()
        self._backing, self.map_path, self._unlink_map = backing, map_path, False
        self._memory = mmap.mmap(backing.fileno(), _SIZE)  # MAP_SHARED

    @classmethod
    def private(cls, seed_file: File = None, logger: Log = None) -> SeedStore:
        """A map of this process's own, and of those forked from it (flask run, the tests)."""
        store, _final = cls._new_map(seed_file, logger, beside=False)
        os.unlink(store.map_path)
        store.map_path = None
        return store

    @classmethod
    def publish(cls, seed_file: File = None, logger: Log = None) -> SeedStore:
        """A map that workers attach to by name (`python -m app`): `.<seed file>.map`
        beside the seed file, else a temporary file that close() removes."""
        store, final = cls._new_map(seed_file, logger, beside=True)
        if final:  # replaced at once: a start never sees an old map
            os.replace(store.map_path, final)
            store.map_path = final
        else:
            store._unlink_map = True
        return store

    @classmethod
    def attach(cls, map_path: str, seed_file: File = None, logger: Log = None) -> SeedStore:
        """A worker's store, on the map `publish` made."""
        return cls(open(map_path, "r+b"), map_path, seed_file, logger)  # closed by close()

    @classmethod
    def _new_map(cls, seed_file: File, logger: Log,
                 beside: bool) -> tuple[SeedStore, str | None]:
        # The seed in a new map file: beside the seed file if asked and its folder allows,
        # then with the name it is to have there (else None).
        path = os.path.abspath(seed_file) if seed_file else None
        value = load_seed(path, logger or log)  # makes the directory: ask only now if writable
        where = path and os.path.dirname(path)
        beside = bool(beside and where and os.access(where, os.W_OK | os.X_OK))
        fd, map_path = tempfile.mkstemp(
            dir=where if beside else None, suffix=".tmp",
            prefix=f".{os.path.basename(path) if beside else 'seed-lb'}.map.")
        backing = os.fdopen(fd, "r+b")
        backing.truncate(_SIZE)
        store = cls(backing, map_path, seed_file, logger)
        _write(store._memory, str(value))  # nobody else sees the map yet
        return store, (os.path.join(where, f".{os.path.basename(path)}.map") if beside
                       else None)

    @contextlib.contextmanager
    def _locked(self, byte: int, exclusive: bool):
        with self._writer_lock if byte == _WRITER else self._value_lock:
            fd = self._backing.fileno()
            fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, 1, byte)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)

    def get_text(self) -> str:
        """The seed as the exact decimal text GET returns: `100`, `-7`, `0`."""
        # No lock (lockf lets go of the GIL: ~40 us a GET); a write under way means a retry,
        # then a read under the lock.
        for _ in range(100):
            text = _read(self._memory)
            if text is not None:
                return text
        with self._locked(_VALUE, exclusive=False):
            return _read(self._memory, locked=True)

    def get(self) -> int:
        return int(self.get_text())

    def set(self, value: int) -> str:
        """Store `value`, on disk first; SeedStoreError (nothing changed) if that fails."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"the seed is an int, not {type(value).__name__}")
        text = str(value)
        if len(text.lstrip("-")) > MAX_DIGITS:
            raise ValueError(f"the seed has more than {MAX_DIGITS} digits")
        with self._locked(_WRITER, exclusive=True):
            if self.path:
                try:
                    self._persist(text)
                except OSError as err:
                    raise SeedStoreError(f"could not write the seed file {self.path}: {err}") \
                        from err
            with self._locked(_VALUE, exclusive=True):
                _write(self._memory, text)
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
        if self._unlink_map:
            with contextlib.suppress(OSError):
                os.unlink(self.map_path)

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


def _write(memory: mmap.mmap, text: str) -> None:
    data = text.encode("ascii")
    count = _HEADER.unpack_from(memory)[0] | 1
    memory[:8] = struct.pack("<Q", count)
    memory[_HEADER.size:_HEADER.size + len(data)] = data
    memory[:_HEADER.size] = _HEADER.pack(count + 1, len(data), zlib.crc32(data))


def _read(memory: mmap.mmap, locked: bool = False) -> str | None:
    count, length, crc = _HEADER.unpack_from(memory)
    data = memory[_HEADER.size:_HEADER.size + min(length, _SIZE - _HEADER.size)]
    if not locked and (count & 1 or memory[:8] != struct.pack("<Q", count)
                       or zlib.crc32(data) != crc):
        return None  # a write under way
    return data.decode("ascii")


def load_seed(path: str | None, logger: logging.Logger) -> int:
    """The seed at start-up: the seed file's value, or 0 (missing, unreadable, corrupt)."""
    if not path:
        logger.info("seed: in memory only (set SEED_FILE to keep it across restarts)")
        return 0
    directory, name = os.path.split(path)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        logger.error("seed: cannot create the seed file's directory %s (%s); "
                     "starting at 0, and POSTs will fail until it exists", directory, err)
        return 0
    _remove_stale_temps(directory, name)
    try:
        with open(path, "rb") as f:
            raw = f.read(_SIZE + 1)
    except FileNotFoundError:
        logger.info("seed: no seed file %s yet; starting at 0", path)
        return 0
    except OSError as err:
        logger.error("seed: cannot read the seed file %s (%s); starting at 0", path, err)
        return 0
    problem = _problem_with(raw)
    if problem is None:
        value = int(raw.decode("ascii").strip())
        logger.info("seed: restored %s from %s",
                    value if len(raw) < 40 else f"a {len(raw.strip())}-digit seed", path)
        return value
    kept = path + ".corrupt"
    try:
        os.replace(path, kept)
        where = f"the bad file is kept as {kept}"
    except OSError as err:
        where = f"the bad file could not be moved aside ({err})"
    logger.error("seed: the seed file %s is corrupt (%s); starting at 0 and %s",
                 path, problem, where)
    return 0


def _remove_stale_temps(directory: str, name: str) -> None:
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
