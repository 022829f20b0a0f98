"""Where a `local faults` run keeps its processes: in the checkout it runs from, beside the
testbeds' own runtime directories. Two checkouts that share the code (the suite's fresh-shell
checkouts link it) must not share their runs: `make local-down` in one once stopped the
other's `make test-faults` mid-run ("interrupted", exit 130)."""

from __future__ import annotations

from infra.local.faults.ownership import run_root
from infra.local.testbed import Testbed


def test_a_run_lives_in_the_checkout_it_runs_from(tmp_path, monkeypatch):
    roots = []
    for name in ("one", "two"):
        checkout = tmp_path / name
        checkout.mkdir()
        monkeypatch.chdir(checkout)
        roots.append(run_root("seed-lb-local"))
        assert roots[-1].is_relative_to(checkout.resolve())
        # beside the testbed's own runtime directory, as `local down` looks for both
        assert roots[-1].parent == Testbed("seed-lb-local").runtime_dir.parent
    assert roots[0] != roots[1]
