"""Shared fixtures: a generated learnable ImageFolder and a small sweep spec over it (weights=none); ``procs``,
the one way tests start subprocesses (each in its own process group, ended in a ``finally``); ``wait_for``; and
the end-of-run check that no process the tests started is left alive."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter

import pytest

from .processes import Processes, leftovers, make_subreaper, stop_all, wait_for  # noqa: F401

os.environ.setdefault("TLSWEEP_TORCH_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
OWN_DIRS = []  # made here, removed after a passing run
if "TLSWEEP_CACHE" not in os.environ:  # keep tests out of ~/.cache
    OWN_DIRS.append(os.environ.setdefault("TLSWEEP_CACHE", tempfile.mkdtemp(prefix="tlsweep-cache-")))
# Each pytest process's local Rays live under a temp dir of its own (short: Ray's socket paths stay < 108 bytes),
# so the leak check can tell them from other programs' Ray processes and a plain ray.init finds no stranger's.
RAY_TMPDIR = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="tlr", dir="/tmp")
OWN_DIRS.append(RAY_TMPDIR)
make_subreaper()  # orphans of the tests' processes (a killed driver's Ray) stay our descendants


# The longest test files (minutes each on 2 cores) start first, then the others by their number of tests: with
# ``--dist loadfile --no-loadscope-reorder`` each file goes whole to one worker in this order (xdist's own order,
# by number of tests alone, left the one-test chaos file to run by itself at the end).
LONGEST_FIRST = ("test_chaos.py", "test_cluster.py", "test_faults.py", "test_study_storage.py", "test_sweep_e2e.py",
                 "test_warm_start.py")


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    tests_in = Counter(item.path for item in items)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -tests_in[item.path]))  # stable in a file


@pytest.fixture()
def procs():
    """Start subprocesses with ``procs.popen``/``procs.run``; all are ended, with their process groups and
    descendants, when the test ends, pass or fail."""
    with Processes() as p:
        yield p


@pytest.fixture(scope="module")
def module_procs():
    """``procs`` for module-scoped fixtures (a cluster, a server)."""
    with Processes() as p:
        yield p


@pytest.fixture(scope="session", autouse=True)
def no_process_left():
    """Fail the run when a process the tests started outlives them: a descendant of this pytest process or a
    process of its own Ray temp dir. Leftovers are killed after being reported."""
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    left = leftovers(RAY_TMPDIR, grace=20)
    if left:
        stop_all(left)
        raise AssertionError("processes left by the tests:\n" + "\n".join(f"{pid}: {cmd}" for pid, cmd in left.items()))


def pytest_sessionfinish(session, exitstatus):
    """Remove this process's cache and Ray temp dirs when its tests passed (after a failure they stay, with Ray's
    logs)."""
    if exitstatus == 0:
        for path in OWN_DIRS:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    from tlsweep.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", num_classes=3,
                               per_class={"train": 24, "val": 12, "test": 12}, size=32, seed=0)


@pytest.fixture()
def spec_dict(shapes_root, tmp_path):
    """A valid plain sweep mapping; tests change what they need."""
    return {
        "name": "tiny",
        "data": {"root": str(shapes_root), "image_size": 32},
        "weights": "none",
        "models": ["resnet18", "mobilenet_v3_small", {"ensemble": ["resnet18", "mobilenet_v3_small"],
                                                      "fusion": "logits"}],
        "search": {"lr": {"loguniform": [1e-3, 1e-2]}, "batch_size": {"choice": [8, 16]},
                   "freeze_depth": {"choice": [0, 0.5]}, "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 3,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "searcher": {"type": "optuna", "seed": 0},
        "num_samples": 2,
        "storage": str(tmp_path / "results" / "tiny"),
    }


def trial_config_for(shapes_root, **overrides):
    """A small trial's ``TrialConfig`` (resnet18 from scratch, 32 px, no augmentation) with ``overrides``."""
    from tlsweep.config.plan import TrialConfig

    config = {"model": {"name": "resnet18", "weights": "none"}, "model_label": "resnet18",
              "data": {"root": str(shapes_root), "image_size": 32, "augment": "none"}, "epochs": 3, "seed": 0,
              "lr": 1e-3,
              "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none", "freeze_depth": 0.0}
    config.update(overrides)
    return TrialConfig.from_dict(config)


def with_data(config, **changes):
    """``config`` (a ``TrialConfig``) with its ``data`` section changed (plain values, validated)."""
    from tlsweep.config.sections import DataConfig

    return config.replace(data=DataConfig.model_validate({**config.data.model_dump(), **changes}))


def failing_sweep_file(shapes_root, folder, name: str, **overrides):
    """A sweep whose four trials end four ways: resnet18 at lr 1e-3 finishes, at lr 1e12 diverges; both
    mobilenet_v3_small trials fail (their weights file loads, then does not fit the model). → (file, storage)."""
    import torch
    import yaml

    wrong = folder / "wrong_architecture.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, wrong)
    storage = folder / "results" / name
    spec = {
        "name": name,
        "data": {"root": str(shapes_root), "image_size": 32},
        "weights": "none",
        "models": ["resnet18", {"name": "mobilenet_v3_small", "weights": str(wrong)}],
        "search": {"lr": {"grid": [1e-3, 1e12]}, "batch_size": 16, "optimizer": "sgd", "momentum": 0.0,
                   "lr_scheduler": "none"},
        "epochs": 2, "scheduler": {"type": "fifo"}, "num_samples": 1, "max_failures": 0,
        "checkpoints": {"num_to_keep": 1}, "storage": str(storage), **overrides,
    }
    sweep = folder / f"{name}.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    return sweep, storage
