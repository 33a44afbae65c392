"""Nothing per training step makes the host wait for the GPU, checked on the CPU: every call that forces a sync
on CUDA (``.item()``, ``.cpu()``, ``.tolist()``, a tensor's truth value or ``float``/``int``, a blocking
``.to(device)`` or a tensor built from host data on the device) is counted while trials train on the device input
path and the feature cache; the count per epoch must not grow with the number of steps.

The counter sees Python calls only; syncs inside torch's own kernels (e.g. ``bincount`` on CUDA) are what
``benchmarks/gpu_proof.py`` measures with ``torch.cuda.set_sync_debug_mode`` on a GPU."""

from __future__ import annotations

import contextlib
import traceback

import pytest
import torch

from tlsweep.config.sections import DataConfig
from tlsweep.data.cache import decoded as I
from tlsweep.data.cache.device import DeviceBatches
from tlsweep.trial import loop
from tlsweep.trial.loop import Trial

from .conftest import trial_config_for, with_data

SYNCS = ("item", "cpu", "tolist", "__bool__", "__float__", "__int__")


class SyncCounter:
    """Counts the calls that would wait for ``target`` if it were a GPU, with where each was made."""

    def __init__(self, target: torch.device):
        self.target, self.calls = torch.device(target), []

    def _note(self, what: str) -> None:
        frame = traceback.extract_stack(limit=3)[0]
        self.calls.append(f"{what} at {frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}")

    def _is_target(self, device) -> bool:
        return device is not None and torch.device(device) == self.target

    @contextlib.contextmanager
    def counting(self):
        saved = {name: getattr(torch.Tensor, name) for name in (*SYNCS, "to")}
        saved_fns = {"as_tensor": torch.as_tensor, "tensor": torch.tensor}
        counter = self

        def counted(name):
            original = saved[name]

            def call(self, *args, **kwargs):
                counter._note(name)
                return original(self, *args, **kwargs)
            return call

        def to(self, *args, **kwargs):
            device = kwargs.get("device")
            for a in args:
                if isinstance(a, (str, torch.device)):
                    device = a
            if counter._is_target(device) and not kwargs.get("non_blocking", False):
                counter._note("blocking .to(device)")
            return saved["to"](self, *args, **kwargs)

        def on_device(name):
            original = saved_fns[name]

            def make(data, *args, **kwargs):
                if counter._is_target(kwargs.get("device")):
                    counter._note(f"torch.{name}(host data, device)")
                return original(data, *args, **kwargs)
            return make

        try:
            for name in SYNCS:
                setattr(torch.Tensor, name, counted(name))
            torch.Tensor.to = to
            for name in saved_fns:
                setattr(torch, name, on_device(name))
            yield self
        finally:
            for name, fn in saved.items():
                setattr(torch.Tensor, name, fn)
            for name, fn in saved_fns.items():
                setattr(torch, name, fn)


def epoch_calls(trial: Trial, epochs: int = 2) -> list[list[str]]:
    """The counted calls of each of ``epochs`` epochs (train + evaluate), the first one after a warm-up epoch."""
    trial.train_epoch()
    out = []
    for _ in range(epochs):
        counter = SyncCounter(trial.device)
        with counter.counting():
            trial.train_epoch()
            trial.evaluate()
        out.append(counter.calls)
    return out


def device_trial(shapes_root, tmp_path, batch_size: int, augment="basic", **overrides) -> Trial:
    config = trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, batch_size=batch_size,
                              optimizer="sgd", performance={"input": "device"}, **overrides)
    config = with_data(config, augment=augment, cache={"images": "on", "features": "off"},
                      cache_dir=str(tmp_path))
    return Trial(config, device="cpu")


def test_the_counter_sees_every_kind_of_sync():
    counter = SyncCounter(torch.device("cpu"))
    x = torch.ones(3)
    with counter.counting():
        x.sum().item(), x.cpu(), x.tolist(), bool(x[0]), float(x[0]), int(x[0])
        x.to("cpu"), torch.as_tensor([1, 2], device="cpu")
        x.to("cpu", non_blocking=True), x.to(torch.float64)  # asynchronous from pinned memory; no device move
    assert [c.split(" at ")[0] for c in counter.calls] == [
        "item", "cpu", "tolist", "__bool__", "__float__", "__int__", "blocking .to(device)",
        "torch.as_tensor(host data, device)"]


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["flip", "basic"])
def test_device_input_path_makes_no_sync_per_step(shapes_root, tmp_path, monkeypatch, augment):
    torch.set_num_threads(1)
    monkeypatch.setattr(loop, "FINITE_EVERY", 10_000)
    counts = {}
    for batch in (4, 12):  # 18 and 6 training steps per epoch
        trial = device_trial(shapes_root, tmp_path, batch, augment)
        assert trial.cache_info["input"] == "device"
        calls = epoch_calls(trial)
        counts[batch] = [len(c) for c in calls]
        # per epoch: the train sums and the val sums read once each, then the F1 of the host copy (no sync on a GPU)
        assert len(calls[0]) <= 3, calls[0]
    assert counts[4] == counts[12], counts  # 3× the steps, the same syncs: none per step


def test_the_finite_check_runs_every_n_steps(shapes_root, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(loop, "FINITE_EVERY", 5)
    trial = device_trial(shapes_root, tmp_path, 4, "none")  # 18 steps: checks after steps 5, 10 and 15
    base = len(epoch_calls(trial, 1)[0])
    monkeypatch.setattr(loop, "FINITE_EVERY", 10_000)
    assert base - len(epoch_calls(trial, 1)[0]) == 3


@pytest.mark.slow
def test_feature_cache_epochs_make_no_sync_per_step(shapes_root, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(loop, "FINITE_EVERY", 10_000)
    counts = []
    for batch in (4, 12):
        config = trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, batch_size=batch,
                                  optimizer="sgd", freeze_depth="all")
        config = with_data(config, cache={"images": "on", "features": "on"},
                          cache_dir=str(tmp_path))
        trial = Trial(config, device="cpu")
        assert trial.cache_info["feature_cache"] in ("built", "hit")
        calls = epoch_calls(trial)
        counts.append([len(c) for c in calls])
    assert counts[0] == counts[1] and counts[0][0] <= 3, (counts, calls)


def test_a_resident_split_serves_batches_without_a_sync(shapes_root, tmp_path):
    from tlsweep.data import load_splits

    splits = load_splits(DataConfig(root=shapes_root), 0)
    cached = I.CachedImages(I.build_images(splits.train, 32, tmp_path), 32, "basic", True)
    loader = DeviceBatches(cached, 4, shuffle=True, device=torch.device("cpu"), generator=torch.Generator(),
                           resident=True)
    next(iter(loader))  # the upload
    counter = SyncCounter(torch.device("cpu"))
    with counter.counting():
        n = sum(1 for _ in loader)
    assert n == len(loader) == 18 and counter.calls == []
