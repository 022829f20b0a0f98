"""The order in which `make test` hands files to its workers: the longest first.

pytest-xdist's `--dist loadfile` gives each worker whole files, in collection order (with
`--no-loadscope-reorder`; by default it puts the files with the most tests first, which
leaves the few long tests of the health-check windows and fault matrices for last, to run
alone at the end). A file's length is its seconds in the last run, kept in pytest's cache;
before any run, a file marked `long` counts as longer than any other.
"""

from __future__ import annotations

from collections.abc import Iterable

CACHE_KEY = "seedlb/file-seconds"
LONG = float("inf")


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def longest_first(items: list, seconds: dict[str, float], is_long) -> list:
    """`items` reordered by their file's length, longest first; a stable sort, so each file's
    own tests keep their order and stay together."""
    def length(item) -> float:
        path = file_of(item.nodeid)
        if path in seconds:
            return seconds[path]
        return LONG if is_long(item) else 0.0
    return sorted(items, key=length, reverse=True)


def measured(reports: Iterable[tuple[str, float]], before: dict[str, float]) -> dict[str, float]:
    """`before` with each file that ran replaced by its total seconds (setup, call and
    teardown of each of its tests) in this run."""
    now: dict[str, float] = {}
    for nodeid, duration in reports:
        now[file_of(nodeid)] = now.get(file_of(nodeid), 0.0) + duration
    return {**before, **{path: round(total, 2) for path, total in now.items()}}
