"""``tlsweep status`` counts the faults a sweep recovered from: each run of a trial after its first (a new
``started_at`` in its results) and each failure Tune retried (its experiment state's ``num_failures``, also a
failure before the trial reported anything), shown per trial and in all."""

from __future__ import annotations

import io
import json

from rich.console import Console

from tlsweep.results.progress import Progress, _tune_failures


def test_restarts_are_counted_per_trial_and_shown():
    p = Progress("demo", "val_acc", "max", 2, 3)
    rows = [("a", 1, 10.0), ("a", 2, 10.0), ("a", 2, 20.0), ("a", 3, 20.0),  # restored from epoch 1
            ("b", 1, 11.0), ("b", 1, 30.0), ("b", 2, 40.0), ("b", 3, 40.0)]  # restarted twice
    for trial, epoch, started in rows:
        p.result(trial, "m", {"training_iteration": epoch, "val_acc": 0.5, "started_at": started})
    assert (p.trials["a"].restarts, p.trials["b"].restarts, p.restarts()) == (1, 2, 3)
    assert p.to_dict()["restarts"] == 3 and [t["restarts"] for t in p.to_dict()["trials"]] == [1, 2]
    out = io.StringIO()
    Console(file=out, width=200).print(p.render())
    assert "recovered: 0 trial failure(s) retried, 3 restart(s) from checkpoints (a ×1, b ×2)" in out.getvalue()


def test_a_sweep_without_faults_shows_no_recovery_line():
    p = Progress("demo", "val_acc", "max", 1, 2)
    for epoch in (1, 2):
        p.result("a", "m", {"training_iteration": epoch, "val_acc": 0.5, "started_at": 5.0})
    out = io.StringIO()
    Console(file=out, width=200).print(p.render())
    assert p.restarts() == 0 and "recovered" not in out.getvalue()


def test_failures_tune_retried_are_read_from_its_experiment_state(tmp_path):
    def entry(trial_id, status, failures):
        return [json.dumps({"trial_id": trial_id, "status": status}), json.dumps({"num_failures": failures})]

    state = {"trial_data": [entry("a", "TERMINATED", 2), entry("b", "TERMINATED", 0), entry("c", "ERROR", 3)]}
    (tmp_path / "experiment_state-2026-12-06_10-00-00.json").write_text(json.dumps(state))
    assert _tune_failures(str(tmp_path)) == {"a": 2, "b": 0, "c": 3}
    p = Progress("demo", "val_acc", "max", 1, 2)
    p.result("a", "m", {"training_iteration": 1, "val_acc": 0.5, "started_at": 5.0})
    p.trials["a"].retries = 2  # failed twice before reporting again: no new run in its results
    out = io.StringIO()
    Console(file=out, width=200).print(p.render())
    assert p.to_dict()["retries"] == 2 and "recovered: 2 trial failure(s) retried, 0 restart(s)" in out.getvalue()
