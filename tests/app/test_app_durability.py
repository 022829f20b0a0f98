"""The seed store: SEED_FILE across restarts, corrupt files, atomic writes, sharing across forks."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from app.parsing import MAX_DIGITS
from app.seed_store import SeedStore


@pytest.fixture
def seed_file(tmp_path):
    return tmp_path / "state" / "seed"


@pytest.fixture
def stores():
    made = []

    def make(path=None):
        store = SeedStore.private(path)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# -- restart -----------------------------------------------------------------------------

def test_seed_survives_restart(make_app, seed_file):
    first = make_app(SEED_FILE=str(seed_file)).test_client()
    assert first.post("/", json={"num": -42}).status_code == 200
    second = make_app(SEED_FILE=str(seed_file)).test_client()  # a new process, as it were
    assert second.get("/").get_data() == b"-42"


def test_longest_seed_survives_restart(make_app, seed_file):
    value = "-" + "7" * MAX_DIGITS
    make_app(SEED_FILE=str(seed_file)).test_client().post("/", data=f'{{"num": {value}}}')
    assert make_app(SEED_FILE=str(seed_file)).test_client().get("/").get_data(as_text=True) \
        == value


def test_missing_file_starts_at_zero_and_creates_directory(make_app, seed_file):
    client = make_app(SEED_FILE=str(seed_file)).test_client()
    assert client.get("/").get_data() == b"0"
    assert seed_file.parent.is_dir()
    client.post("/", json={"num": 3})
    assert seed_file.read_text() == "3\n"


def test_without_seed_file_nothing_is_written(make_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = make_app().test_client()
    client.post("/", json={"num": 3})
    assert list(tmp_path.iterdir()) == []
    assert make_app().test_client().get("/").get_data() == b"0"  # memory only


def test_seed_file_from_environment(monkeypatch, seed_file):
    from app import create_app

    seed_file.parent.mkdir()
    seed_file.write_text("77\n")
    monkeypatch.setenv("SEED_FILE", str(seed_file))
    app = create_app({"TESTING": True})
    try:
        assert app.test_client().get("/").get_data() == b"77"
    finally:
        app.extensions["seed_store"].close()


def test_rejected_post_leaves_file_untouched(make_app, seed_file):
    client = make_app(SEED_FILE=str(seed_file)).test_client()
    client.post("/", json={"num": 5})
    before = seed_file.stat().st_mtime_ns
    assert client.post("/", json={"num": True}).status_code == 400
    assert seed_file.read_text() == "5\n"
    assert seed_file.stat().st_mtime_ns == before


# -- corrupt files -----------------------------------------------------------------------

CORRUPT = {
    "empty": b"",
    "zero_filled": b"\x00\x00\x00\x00",  # what a crash can leave of a non-atomic write
    "torn_sign": b"-",
    "garbage": b"not a number\n",
    "json": b'{"num": 5}\n',
    "binary": b"\x00\xff\x13",
    "fraction": b"1.5\n",
    "too_long": b"1" * (MAX_DIGITS + 1),
    "huge": b"1" * 100_000,
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_file_falls_back_to_zero_with_one_log_line(make_app, seed_file, caplog,
                                                           content):
    seed_file.parent.mkdir()
    seed_file.write_bytes(content)
    with caplog.at_level(logging.INFO):
        client = make_app(SEED_FILE=str(seed_file)).test_client()
    assert client.get("/").get_data() == b"0"
    assert client.get("/health").status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "corrupt" in errors[0].getMessage() and str(seed_file) in errors[0].getMessage()
    # the bad file is kept for a human, and the next POST writes a good one
    assert (seed_file.parent / "seed.corrupt").read_bytes() == content
    assert client.post("/", json={"num": 9}).status_code == 200
    assert seed_file.read_text() == "9\n"


def test_corrupt_file_does_not_crash_loop(make_app, seed_file):
    # Start twice in a row on the same bad file: both starts serve.
    seed_file.parent.mkdir()
    seed_file.write_bytes(b"garbage")
    assert make_app(SEED_FILE=str(seed_file)).test_client().get("/").get_data() == b"0"
    assert make_app(SEED_FILE=str(seed_file)).test_client().get("/").get_data() == b"0"


def test_tolerated_file_forms(stores, seed_file):
    seed_file.parent.mkdir()
    for content, expected in [(b"  -12 \n", -12), (b"-0", 0), (b"0042", 42)]:
        seed_file.write_bytes(content)
        assert stores(seed_file).get() == expected


def test_unreadable_seed_file_is_logged_not_fatal(stores, seed_file, caplog):
    seed_file.mkdir(parents=True)  # a directory where the file should be
    with caplog.at_level(logging.INFO):
        store = stores(seed_file)
    assert store.get() == 0
    assert any("cannot read" in r.getMessage() or "corrupt" in r.getMessage()
               for r in caplog.records)


# -- atomic writes -----------------------------------------------------------------------

def test_write_is_temp_fsync_rename_fsync_dir(stores, seed_file, monkeypatch):
    store = stores(seed_file)
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.dirname(src) == os.path.dirname(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.set(12)
    assert calls == [("fsync", "file"), ("replace", True), ("fsync", "dir")]
    assert seed_file.read_text() == "12\n"


def test_crash_before_rename_keeps_old_value_and_leaves_no_temp(stores, seed_file, monkeypatch):
    store = stores(seed_file)
    store.set(1)

    def crash(src, dst):
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", crash)
    from app.seed_store import SeedStoreError

    with pytest.raises(SeedStoreError):
        store.set(2)
    assert store.get() == 1  # memory follows the disk: not changed either
    assert seed_file.read_text() == "1\n"
    assert sorted(p.name for p in seed_file.parent.iterdir()) == ["seed"]


def test_stale_temp_files_are_removed_at_start(stores, seed_file):
    seed_file.parent.mkdir()
    seed_file.write_text("5\n")
    stale = seed_file.parent / ".seed.abc123.tmp"
    stale.write_text("99")
    other = seed_file.parent / "unrelated.tmp"
    other.write_text("x")
    assert stores(seed_file).get() == 5
    assert not stale.exists() and other.exists()


def test_failed_write_is_503_and_seed_unchanged(make_app, seed_file, monkeypatch):
    client = make_app(SEED_FILE=str(seed_file)).test_client()
    client.post("/", json={"num": 4})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    response = client.post("/", json={"num": 5})
    assert response.status_code == 503
    assert "unchanged" in response.get_json()["error"]
    assert client.get("/").get_data() == b"4"
    assert seed_file.read_text() == "4\n"


def test_health_reports_unwritable_seed_directory(make_app, seed_file, monkeypatch):
    client = make_app(SEED_FILE=str(seed_file)).test_client()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if path == str(seed_file.parent)
                        else real_access(path, mode))
    response = client.get("/health")
    assert response.status_code == 503
    assert "not writable" in response.get_json()["error"]


# -- sharing across threads and processes ------------------------------------------------

def test_threads_never_see_torn_values(stores):
    store = stores()
    values = [int(str(d) * n) for d, n in [(1, 1), (2, 4300), (3, 17), (4, 2000), (5, 900)]]
    allowed = {str(v) for v in values} | {"0"}
    seen, stop = set(), threading.Event()

    def writer(value):
        for _ in range(300):
            store.set(value)

    def reader():
        while not stop.is_set():
            seen.add(store.get_text())

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(v,)) for v in values]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert seen <= allowed


def _in_child(fn) -> int:
    """Run fn() in a forked child (as servers fork workers); return its exit status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            code = fn() or 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_workers_share_the_seed(stores):
    store = stores()  # created before the fork, as `python -m app` preloads it
    def post_in_worker():
        store.set(123)

    assert _in_child(post_in_worker) == 0
    assert store.get() == 123  # the parent sees the child's POST
    store.set(-9)
    assert _in_child(lambda: 0 if store.get() == -9 else 3) == 0  # and the other way round


def test_worker_killed_holding_the_lock_does_not_block_others(stores):
    # A record lock dies with its process; a semaphore would stay taken forever.
    store = stores()
    store.set(1)

    def die_while_writing():
        from app.seed_store import _VALUE, _WRITER

        with store._locked(_WRITER, exclusive=True), store._locked(_VALUE, exclusive=True):
            os.kill(os.getpid(), signal.SIGKILL)

    assert _in_child(die_while_writing) == -signal.SIGKILL
    done = threading.Event()
    threading.Thread(target=lambda: (store.set(2), done.set()), daemon=True).start()
    assert done.wait(5), "the seed stayed locked after its holder died"
    assert store.get() == 2


def test_set_refuses_what_is_not_a_seed(stores):
    store = stores()
    with pytest.raises(TypeError):
        store.set(True)
    with pytest.raises(TypeError):
        store.set("5")
    with pytest.raises(ValueError):
        store.set(10**MAX_DIGITS)
    assert store.get() == 0


# -- the published map: what `python -m app`'s workers attach to --------------------------

def _attach_and_set(map_path: str, seed_file: str, value: int) -> None:
    """In a spawned process (nothing inherited but the arguments): attach, POST, leave."""
    store = SeedStore.attach(map_path, seed_file)
    store.set(value)
    store.close()


def _attach_and_expect(map_path: str, expected: str) -> None:
    store = SeedStore.attach(map_path)
    if store.get_text() != expected:
        raise SystemExit(3)


def test_spawned_processes_share_a_published_seed(seed_file):
    # A spawned worker inherits no memory: it finds the seed by the map's name.
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    store = SeedStore.publish(seed_file)
    try:
        assert store.map_path == str(seed_file.parent / ".seed.map")
        child = spawn.Process(target=_attach_and_set, args=(store.map_path, str(seed_file), 55))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert store.get() == 55 and seed_file.read_text() == "55\n"  # disk, then memory
        store.set(-3)
        child = spawn.Process(target=_attach_and_expect, args=(store.map_path, "-3"))
        child.start()
        child.join(60)
        assert child.exitcode == 0
    finally:
        store.close()
    assert (seed_file.parent / ".seed.map").exists()  # kept: the next start replaces it


def test_each_start_publishes_a_fresh_map(seed_file):
    first = SeedStore.publish(seed_file)
    first.set(8)
    first.close()
    seed_file.unlink()  # the file is gone: the next start is at 0, not the old map's 8
    second = SeedStore.publish(seed_file)
    try:
        assert second.get() == 0
        assert sorted(p.name for p in seed_file.parent.iterdir()) == [".seed.map"]
    finally:
        second.close()


def test_published_map_without_seed_file_is_removed_on_close():
    store = SeedStore.publish()
    path = store.map_path
    assert os.path.exists(path)
    worker = SeedStore.attach(path)
    worker.set(12)
    assert store.get() == 12
    worker.close()
    store.close()
    assert not os.path.exists(path)


def test_private_store_leaves_no_map_file(seed_file):
    store = SeedStore.private(seed_file)
    try:
        assert store.map_path is None
        assert list(seed_file.parent.iterdir()) == []
    finally:
        store.close()


def test_reader_does_not_wait_for_a_writers_fsync(seed_file, monkeypatch):
    # Writers are ordered by their own lock byte; GETs only take the value's byte.
    store = SeedStore.private(seed_file)
    store.set(1)
    in_fsync, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        in_fsync.set()
        release.wait(10)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    writer = threading.Thread(target=store.set, args=(2,))
    writer.start()
    try:
        assert in_fsync.wait(5)
        started = time.monotonic()
        assert store.get() == 1  # the POST has not returned: the old value, at once
        assert time.monotonic() - started < 1
    finally:
        release.set()
        writer.join(10)
    assert store.get() == 2
    store.close()


def test_a_reader_in_another_process_never_sees_a_torn_value(stores):
    # GETs read without a lock (a write count and a CRC tell a write under way); a forked
    # reader checks every value it sees while this process writes values of other lengths.
    store = stores()
    values = [str(d) * n for d, n in [(1, 1), (2, 4300), (3, 17), (4, 2000), (5, 900)]]
    allowed = set(values) | {"0"}

    def reader():
        deadline = time.monotonic() + 3
        seen = set()
        while time.monotonic() < deadline:
            text = store.get_text()
            if text not in allowed:
                return 3
            seen.add(text)
        return 0 if len(seen) > 2 else 4  # it did overlap the writes

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = reader()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        for value in values:
            store.set(int(value))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_write_left_half_done_falls_back_to_the_locked_read(stores):
    # A writer killed between its two stores leaves the count odd: readers give up on the
    # lock-free read and read under the lock (which the dead writer no longer holds).
    from app.seed_store import _HEADER

    store = stores()
    store.set(77)
    count = _HEADER.unpack_from(store._memory)[0]
    store._memory[:8] = (count | 1).to_bytes(8, "little")
    assert store.get_text() == "77"
    store.set(78)  # the next write makes the count even again
    assert _HEADER.unpack_from(store._memory)[0] % 2 == 0 and store.get_text() == "78"
