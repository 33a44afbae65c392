"""The chaos benchmark's quick variant (``benchmarks/bench_chaos.py``): one sweep on a two-node loopback cluster
survives a killed trial worker, a killed worker node, a killed driver and a destroyed checkpoint, losing nothing."""

import pytest

from benchmarks.bench_chaos import KINDS, chaos_rounds, row

pytestmark = pytest.mark.slow


def test_quick_chaos_sweep_loses_nothing(tmp_path):
    done = chaos_rounds(quick=True, seed=0, work=tmp_path)
    assert [p for r in done for p in r.problems] == []
    assert sorted({f.kind for r in done for f in r.faults}) == sorted(KINDS)
    result = row(done, quick=True, seed=0)
    assert result["met"] and not any(r.lost for r in done), result
    assert sum(r.restarts for r in done) >= 1  # trials came back from their checkpoints
