"""Same sweep file, same seed, same machine: the same sampled configs and, on CPU, the same metrics."""

import pytest

from tlsweep.config.space import build_groups
from tlsweep.config.spec import parse_spec
from tlsweep.sweep.runner import SweepResult, error_message
from tlsweep.trial.loop import fit

from .conftest import trial_config_for


def proposals(spec_dict, seed, n=6):
    from tlsweep.sweep.searcher import GroupedSearcher

    spec_dict["searcher"]["seed"] = seed
    spec_dict["search"]["weight_decay"] = {"uniform": [0.0, 0.1]}
    plan = parse_spec(spec_dict).plan()
    searcher = GroupedSearcher(build_groups(plan), plan.num_samples, "val_acc", "max", "optuna", seed)
    suggested = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        suggested.append(config)
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i, "training_iteration": 1})
    return suggested


def test_searcher_proposes_the_same_configs_for_the_same_seed(spec_dict):
    a, b = proposals(dict(spec_dict), 7), proposals(dict(spec_dict), 7)
    assert a == b
    assert len({round(c["lr"], 12) for c in a}) == len(a)  # really sampled, not constants
    assert proposals(dict(spec_dict), 8) != a


def test_same_config_same_metrics_on_cpu(shapes_root):
    config = trial_config_for(shapes_root, epochs=1, batch_size=16, model={"name": "mobilenet_v3_small"},
                              optimizer="sgd", lr=0.05, lr_scheduler="step", step_size=1)
    a, b = fit(config, "cpu"), fit(config, "cpu")
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[m[k] for k in keys] for m in a] == [[m[k] for k in keys] for m in b]


def test_run_fails_only_when_every_trial_failed():
    import pandas as pd

    mixed = SweepResult("x", pd.DataFrame({"status": ["error", "diverged", "stopped"]}), 1.0)
    failed = SweepResult("x", pd.DataFrame({"status": ["error", "diverged"]}), 1.0)
    assert not mixed.all_failed and failed.all_failed


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("Error(s) in loading state_dict:\n\tUnexpected key"),
     "RuntimeError: Error(s) in loading state_dict: Unexpected key"),
    (Exception("ray::ImplicitFunc.train() (pid=1)\nTraceback (most recent call last):\n  File 'x'\n"
               "torch.OutOfMemoryError: CUDA out of memory."), "torch.OutOfMemoryError: CUDA out of memory."),
])
def test_trial_errors_keep_the_exception_line(error, expected):
    assert error_message(error) == expected


class _Payload:
    def __reduce__(self):
        return (print, ("this code ran",))


def test_checkpoints_are_atomic_and_never_unpickle_code(tmp_path):
    import pickle

    import torch

    from tlsweep.trial.loop import load_checkpoint, save_checkpoint

    path = save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, tmp_path / "ckpt" / "checkpoint.pt")
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # temp file renamed away
    torch.save({"epoch": 1, "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")
