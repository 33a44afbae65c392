"""The Ray-free progress model and its views (the Ray callback and `status` are covered in test_progress_sweep)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tlsweep.results.progress import Progress, View, error_line, format_seconds


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _progress(mode="max", total=4, epochs=3):
    return Progress("demo", "val_acc", mode, total, epochs, storage="/r/demo", clock=Clock())


def test_counts_epochs_and_eta_from_measured_epoch_times():
    p = _progress()
    assert p.counts()["pending"] == 4 and p.epochs_left() == 12 and p.eta_seconds() is None
    p.start("a", "resnet18")
    p.start("b", "vgg16")
    p.result("a", "resnet18", {"training_iteration": 1, "val_acc": 0.5, "time_this_iter_s": 10.0})
    p.result("b", "vgg16", {"training_iteration": 1, "val_acc": 0.4, "time_this_iter_s": 30.0})
    c = p.counts()
    assert (c["running"], c["pending"]) == (2, 2)
    assert p.epochs_done() == 2
    assert p.epochs_left() == 2 * 2 + 2 * 3
    assert p.epoch_seconds() == pytest.approx(20.0)
    assert p.eta_seconds() == pytest.approx(10 * 20.0 / 2)  # epochs left × mean epoch ÷ running


def test_best_so_far_per_model_respects_mode_and_ignores_replayed_epochs():
    for mode, want in (("max", 0.9), ("min", 0.2)):
        p = _progress(mode)
        for epoch, value in enumerate([0.2, 0.9, 0.5], 1):
            p.result("a", "resnet18", {"training_iteration": epoch, "val_acc": value})
        p.result("a", "resnet18", {"training_iteration": 2, "val_acc": 0.99 if mode == "max" else 0.01})  # after restore
        best = p.best_per_model()["resnet18"]
        assert best.best == want and p.trials["a"].epochs == 3


def test_end_states_finished_stopped_diverged_error():
    p = _progress(total=4, epochs=2)
    for tid in "abcd":
        p.start(tid, "m")
    for e in (1, 2):
        p.result("a", "m", {"training_iteration": e, "val_acc": 0.5})
    p.result("b", "m", {"training_iteration": 1, "val_acc": 0.5})
    p.result("c", "m", {"training_iteration": 1, "val_acc": float("nan"), "diverged": True})
    assert p.end("a", "m").status == "finished"
    assert p.end("b", "m").status == "stopped"  # ended before max epochs: ASHA
    assert p.end("c", "m").status == "diverged"
    d = p.end("d", "m", error="ValueError: boom", error_file="/r/demo/d_m/error.txt")
    assert d.status == "error" and p.failures() == [d]
    assert p.done() and p.epochs_left() == 0 and p.eta_seconds() == 0.0
    assert p.to_dict()["counts"] == {"pending": 0, "running": 0, "finished": 1, "stopped": 1, "diverged": 1, "error": 1}


def test_error_line_reads_the_last_exception_of_rays_error_file():
    text = ("Failure # 1 (occurred at 2026-11-26_11-40-10)\n"
            "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n  File \"x.py\", line 3, in f\n"
            "RuntimeError: Error(s) in loading state_dict for ResNet:\n\tMissing key(s)\n")
    assert error_line(text) == "RuntimeError: Error(s) in loading state_dict for ResNet:"
    assert error_line("") == "error"


def _console():
    buf = io.StringIO()
    return Console(file=buf, width=120, force_terminal=False, color_system=None), buf


def test_plain_view_prints_a_line_per_trial_event_with_error_and_its_file():
    p = _progress(total=2, epochs=1)
    console, buf = _console()
    with View(p, "auto", console=console) as view:  # not a terminal → plain
        assert view.mode == "plain"
        view.event("start", p.start("a", "resnet18"))
        view.event("result", p.result("a", "resnet18", {"training_iteration": 1, "val_acc": 0.75}))
        view.event("end", p.end("a", "resnet18"))
        view.event("end", p.end("b", "vgg16", error="OSError: disk full", error_file="/r/demo/b_vgg16/error.txt"))
    out = buf.getvalue()
    assert "a resnet18 started" in out
    assert "finished a resnet18 after 1/1 epochs: val_acc 0.7500 at epoch 1" in out
    assert "error b vgg16: OSError: disk full" in out and "full error: /r/demo/b_vgg16/error.txt" in out
    assert out.strip().splitlines()[-1].startswith("demo: 1 finished, 1 error of 2 trials")
    assert "epoch 1 " not in out.replace("at epoch 1", "")  # no line per epoch


def test_quiet_view_prints_nothing_and_live_view_renders_the_table():
    p = _progress()
    console, buf = _console()
    with View(p, "none", console=console) as view:
        view.event("end", p.end("a", "resnet18"))
    assert buf.getvalue() == ""
    p.start("b", "vgg16")
    p.result("b", "vgg16", {"training_iteration": 1, "val_acc": 0.625, "time_this_iter_s": 4.0})
    console, buf = _console()
    console.print(p.render())
    out = buf.getvalue()
    assert "vgg16" in out and "0.6250" in out and "ETA" in out and "1 running" in out
    with pytest.raises(ValueError, match="progress must be one of"):
        View(p, "fancy", console=console)


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 5, 65, 3700)] == ["-", "5s", "1m05s", "1h01m"]
