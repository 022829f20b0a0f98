"""make test hands the longest files to its workers first (tests/schedule.py)."""

from types import SimpleNamespace

import schedule


def items(*nodeids, long=()):
    return [SimpleNamespace(nodeid=n, long=n.split("::")[0] in long) for n in nodeids]


def ids(found):
    return [i.nodeid for i in found]


def test_the_last_runs_seconds_put_the_longest_file_first_and_keep_each_file_whole():
    found = items("a.py::t1", "a.py::t2", "b.py::t1", "c.py::t1", "c.py::t2")
    ordered = schedule.longest_first(found, {"a.py": 2.0, "b.py": 0.1, "c.py": 40.0},
                                     lambda i: i.long)
    assert ids(ordered) == ["c.py::t1", "c.py::t2", "a.py::t1", "a.py::t2", "b.py::t1"]


def test_before_any_run_the_long_marker_goes_first_and_the_rest_keep_their_order():
    found = items("a.py::t", "b.py::t", "c.py::t", "d.py::t", long={"c.py"})
    ordered = schedule.longest_first(found, {}, lambda i: i.long)
    assert ids(ordered) == ["c.py::t", "a.py::t", "b.py::t", "d.py::t"]


def test_a_file_new_since_the_last_run_counts_by_its_marker():
    found = items("old.py::t", "new.py::t", long={"new.py"})
    assert ids(schedule.longest_first(found, {"old.py": 90.0}, lambda i: i.long))[0] == \
        "new.py::t"


def test_each_file_sums_its_phases_and_files_that_did_not_run_keep_their_times():
    reports = [("a.py::t1", 1.0), ("a.py::t1", 2.5), ("a.py::t2", 0.25), ("b.py::t", 3.0)]
    assert schedule.measured(reports, {"a.py": 99.0, "z.py": 7.0}) == \
        {"a.py": 3.75, "b.py": 3.0, "z.py": 7.0}
