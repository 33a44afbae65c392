"""Scheduler registry: ASHA's budget in epochs (default) or training seconds; one tiny real sweep."""

import pytest

from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.sweep.schedulers import asha_kwargs, build_scheduler


def plain_of(spec_dict, **scheduler):
    spec_dict["scheduler"] = {**spec_dict["scheduler"], **scheduler}
    return parse_spec(spec_dict).plan()


def test_epochs_budget_is_the_default(spec_dict):
    plain = plain_of(spec_dict)
    assert plain.scheduler.budget == "epochs"
    assert asha_kwargs(plain) == {"time_attr": "training_iteration", "max_t": 3, "grace_period": 1,
                                  "reduction_factor": 2}


def test_seconds_budget_builds_asha_on_train_seconds(spec_dict):
    plain = plain_of(spec_dict, budget="seconds", max_seconds=120, grace_seconds=15)
    scheduler = build_scheduler(plain)
    from ray.tune.schedulers import ASHAScheduler

    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler._time_attr == "train_seconds_total"
    assert scheduler._max_t == 120
    assert [rung for rung, _ in scheduler._brackets[0]._rungs] == [120, 60, 30, 15]  # reduction_factor 2


def test_fifo_by_name(spec_dict):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    scheduler = build_scheduler(plain_of(spec_dict, type="fifo"))
    assert isinstance(scheduler, FIFOScheduler) and not isinstance(scheduler, ASHAScheduler)


def test_seconds_budget_needs_max_seconds_and_small_grace(spec_dict):
    with pytest.raises(SpecError, match="needs max_seconds"):
        plain_of(spec_dict, budget="seconds")
    with pytest.raises(SpecError, match="grace_seconds .* exceeds max_seconds"):
        plain_of(dict(spec_dict), budget="seconds", max_seconds=5, grace_seconds=10)


def test_grace_period_above_epochs_is_fine_for_seconds_budget(spec_dict):
    plain = plain_of(spec_dict, budget="seconds", max_seconds=60, grace_period=10)
    assert asha_kwargs(plain)["grace_period"] == 10.0  # grace_seconds' default


@pytest.mark.slow
def test_seconds_budget_stops_trials_in_a_real_sweep(spec_dict):
    """max_seconds of a microsecond, below any epoch: every trial is stopped after its first report, by seconds."""
    import json
    from pathlib import Path

    from tlsweep.sweep.runner import run_sweep

    spec_dict.update(models=["mobilenet_v3_small"], num_samples=2, epochs=3, max_concurrent=2)
    spec_dict["scheduler"] = {"type": "asha", "budget": "seconds", "max_seconds": 1e-6, "grace_seconds": 5e-7}
    result = run_sweep(parse_spec(spec_dict))
    trials = result.trials
    assert len(trials) == 2
    assert list(trials["status"]) == ["stopped", "stopped"]
    assert list(trials["epochs"]) == [1, 1]
    for path in trials["path"]:  # what ASHA compared: the trial's training seconds, reported after epoch 1
        (row,) = [json.loads(line) for line in (Path(path) / "result.json").read_text().splitlines()]
        assert row["train_seconds_total"] == row["epoch_seconds"] >= 1e-6
