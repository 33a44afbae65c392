"""The benchmark runner: discovery, --only, error rows and the Markdown table (no benchmark is run)."""

import math
from types import SimpleNamespace

import pytest

from benchmarks.run import collect, discover, format_table, render, select

ROW = {"benchmark": "demo", "baseline": "loop: 10 s", "candidate": "tune: 10.5 s", "ratio": 1.05,
       "target": "≤ 1.10×", "met": True, "notes": "a|b"}


def test_discover_finds_the_bench_modules_sorted(tmp_path):
    for name in ("bench_b.py", "bench_a.py", "run.py", "_common.py", "notes.md"):
        (tmp_path / name).write_text("")
    assert discover(tmp_path) == ["bench_a", "bench_b"]
    assert {"bench_asha", "bench_trial_loop", "bench_tune_overhead"} <= set(discover())


def test_only_accepts_short_and_full_names():
    names = ["bench_asha", "bench_trial_loop"]
    assert select(names, None) == names
    assert select(names, "asha") == ["bench_asha"]
    assert select(names, "bench_trial_loop.py") == ["bench_trial_loop"]
    assert select(names, "asha, bench_trial_loop") == ["bench_asha", "bench_trial_loop"]
    with pytest.raises(SystemExit, match="no benchmark 'nope'; have: asha, trial_loop"):
        select(names, "nope")


def test_collect_keeps_order_and_turns_errors_into_failed_rows():
    def broken(quick):
        raise RuntimeError("no data")

    calls = []
    good = SimpleNamespace(run=lambda quick: calls.append(quick) or [ROW])
    rows = collect({"bench_good": good, "bench_bad": SimpleNamespace(run=broken)}, quick=True)
    assert calls == [True]
    assert rows[0] is ROW
    assert rows[1]["benchmark"] == "bench_bad" and rows[1]["met"] is False
    assert math.isnan(rows[1]["ratio"]) and "RuntimeError: no data" in rows[1]["notes"]


def test_table_formats_ratios_and_escapes_pipes():
    failed = {**ROW, "benchmark": "bad", "ratio": float("nan"), "met": False}
    lines = format_table([ROW, failed]).splitlines()
    assert lines[0] == "| benchmark | baseline | candidate | ratio | target | met | notes |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| demo | loop: 10 s | tune: 10.5 s | 1.05× | ≤ 1.10× | yes | a\\|b |"
    assert lines[3].startswith("| bad |") and "| — |" in lines[3] and "| **no** |" in lines[3]
    text = render([ROW], "some CPU, 2 cores", quick=False, seconds=12.3)
    assert text.startswith("Machine: some CPU, 2 cores\n") and "Suite (full) took 12 s." in text


def test_skipped_rows_show_as_skipped_and_fail_nothing():
    from benchmarks.run import passed

    skipped = {**ROW, "ratio": float("nan"), "met": None, "notes": "not measured: no GPU found"}
    assert "| — | ≤ 1.10× | skipped |" in format_table([skipped])
    assert passed(skipped) and passed(ROW) and not passed({**ROW, "met": False}) and not passed({"benchmark": "x"})


def test_gpu_benchmark_without_a_gpu_says_so():
    import torch

    from benchmarks import bench_gpu

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rows = bench_gpu.run(quick=False)
    assert len(rows) == 9 and all(r["met"] is None and "no GPU found" in r["notes"] for r in rows)
    assert {r["benchmark"] for r in rows} >= {"gpu: Trial vs GPU-resident ceiling, resnet50, basic, resident",
                                              "gpu: Trial vs GPU-resident ceiling, mobilenet_v2, flip, streamed",
                                              "gpu: linear probe epoch, feature-cache hit vs uncached, resnet50",
                                              "gpu sweep: quarter-GPU vs whole-GPU trials"}
