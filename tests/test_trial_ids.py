"""Ray Tune's trial ids are 8 hex digits: some look like numbers (``00012345``, ``1234e567``). Every table tlsweep
reads back keeps them as text."""

from __future__ import annotations

from tlsweep.results.layout import read_history


def test_a_trial_id_that_looks_like_a_number_stays_text_in_the_history(tmp_path):
    trial = tmp_path / "1234e567_resnet18"
    trial.mkdir()
    (trial / "progress.csv").write_text("trial_id,training_iteration,val_acc\n1234e567,1,0.5\n1234e567,2,0.6\n")
    history = read_history(trial)
    assert history["trial_id"].tolist() == ["1234e567", "1234e567"]
    assert history["training_iteration"].tolist() == [1, 2]
