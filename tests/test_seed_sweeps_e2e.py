"""A shrunken copy of every seed sweep runs end to end: tiny generated data with the seed's number of
classes, weights none, 32 px, 1-2 epochs, one sample per group; grids, heads, fusions, augmentation policies
and size schedules kept; the ten vehicle backbones cut to two small ones and the ensembles' members swapped
for small ones (tests/test_seed_sweeps.py builds all the real ones). The ensembles' grid runs as a sweep on
Ray (grid + ASHA, then the report's training time per model); the others run one trial per group (models ×
grid points) Ray-free, as a Ray trial would. CIFAR-10 itself is not on this machine: its copy reads a
10-class ImageFolder."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlsweep.config.distributions import LogUniform
from tlsweep.config.space import build_groups
from tlsweep.config.spec import load_spec
from tlsweep.data.synthetic import make_shapes_dataset
from tlsweep.report.collect import collect
from tlsweep.trial.loop import Trial

pytestmark = pytest.mark.slow  # its module fixture runs real Ray sweeps

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
PER_SPLIT = {"train": 8, "val": 4, "test": 4}
SMALL_PAIR = ["mobilenet_v3_small", "mnasnet0_75"]  # for resnet50 + mobilenet_v2


def colour_folder(root: Path, num_classes: int, size: int = 32) -> Path:
    """An ImageFolder whose classes differ by hue (noise on top), for class counts beyond the six shapes."""
    rng = np.random.default_rng(0)
    for split, n in PER_SPLIT.items():
        for k in range(num_classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            base = np.array(Image.new("HSV", (1, 1), (int(255 * k / num_classes), 200, 200)).convert("RGB"))[0, 0]
            for i in range(n):
                img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def shrink(name: str, root: Path, storage: Path, **extra):
    """The seed sweep file with tiny data and budget; everything else (search, grid, heads, policy) kept."""
    spec = load_spec(SWEEPS / f"{name}.yaml")
    raw = spec.model_dump(mode="json", exclude={"storage"})
    data = {**raw["data"], "root": str(root), "source": "imagefolder", "image_size": 32, "num_workers": 0,
            **extra.pop("data", {})}
    search = {k: v.to_yaml() if hasattr(v, "to_yaml") else v for k, v in spec.search.params().items()}
    return load_spec(SWEEPS / f"{name}.yaml", overrides={
        "data": data, "weights": "none", "epochs": 2, "num_samples": 1, "storage": str(storage / name),
        "resources": {"cpu": 1, "gpu": 0}, "search": {**search, **extra.pop("search", {})},
        "scheduler": {**raw["scheduler"], "grace_period": 1}, **extra})


def middle(dist):
    values = dist.values()
    if values:
        return values[0]
    low, high = dist.bounds()
    return (low * high) ** 0.5 if isinstance(dist, LogUniform) else (low + high) / 2


def run_groups(spec) -> dict[str, tuple[dict, list[dict], int]]:
    """Ray-free: one trial per group, sampled values at the middle of their ranges.
    Group key → (trial config, history, trainable parameters)."""
    plan = spec.plan()
    runs = {}
    for group in build_groups(plan):
        config = plan.trial_config({**group.fixed, **{k: middle(d) for k, d in group.sampled.items()}})
        trial = Trial(config, device="cpu")
        runs[group.key] = (config, list(trial.run()), trial.trainable_params)
    return runs


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import ray

    from tlsweep.sweep.runner import init_ray, run_sweep

    tmp = tmp_path_factory.mktemp("seeds")
    shapes = {n: make_shapes_dataset(tmp / f"shapes{n}", num_classes=n, per_class=PER_SPLIT, size=32)
              for n in (2, 3, 4)}
    storage = tmp / "results"
    torch.set_num_threads(1)
    local = {
        "vehicles_all_models": shrink("vehicles_all_models", shapes[3], storage, epochs=1,
                                      models=["mobilenet_v3_small", "mnasnet0_75"], search={"batch_size": 8}),
        "drones_mobilenet_v2": shrink("drones_mobilenet_v2", shapes[4], storage, data={
            "image_size_schedule": [{"epochs": 1, "size": 24}, {"size": 32}]}),
        "cifar10_frozen": shrink("cifar10_frozen", colour_folder(tmp / "cifar", 10), storage, epochs=1,
                                 search={"batch_size": 16}),
        "cats_dogs_resnet50": shrink("cats_dogs_resnet50", shapes[2], storage, epochs=1, search={"batch_size": 8}),
    }
    out = {name: (spec, run_groups(spec)) for name, spec in local.items()}
    name = "vehicles_ensembles"
    spec = shrink(name, shapes[3], storage, models=[
        {"ensemble": SMALL_PAIR, "fusion": "logits"}, {"ensemble": SMALL_PAIR, "fusion": "features"}])
    init_ray(None, num_cpus=2)
    try:
        out[name] = (spec, run_sweep(spec))
        yield out
    finally:
        ray.shutdown()


def test_every_seed_sweep_finishes(results):
    for name in ("vehicles_all_models", "drones_mobilenet_v2", "cifar10_frozen", "cats_dogs_resnet50"):
        spec, runs = results[name]
        assert {c.model_label for c, _, _ in runs.values()} == set(spec.model_labels()), name
        for config, history, _ in runs.values():
            assert len(history) == spec.epochs and not any(h["diverged"] for h in history), name
    spec, result = results["vehicles_ensembles"]
    assert (result.trials["status"].isin(["finished", "stopped"])).all(), result.trials["error"].tolist()
    assert set(result.trials["model"]) == set(spec.model_labels())


def test_ensemble_grid_is_enumerated_under_asha(results):
    spec, result = results["vehicles_ensembles"]
    points = sorted(zip(result.trials["model"], result.trials["lr"], result.trials["batch_size"]))
    assert points == sorted((m, lr, bs) for m in spec.model_labels() for lr in (1e-2, 1e-3) for bs in (4, 8))


def test_searched_heads_are_trained(results):
    _, runs = results["cats_dogs_resnet50"]
    params = {config.head: n for config, _, n in runs.values()}
    assert sorted(params) == ["linear", "seed"]
    assert params["seed"] > params["linear"]  # the seed's MLP (features→1024→256→2) against one Linear


def test_progressive_resizing_and_policy_run(results):
    _, runs = results["drones_mobilenet_v2"]
    ((config, history, _),) = runs.values()
    assert [h["train_size"] for h in history] == [24, 32]
    assert config.augment_strength == 1.0 and len(config.data.augment) == 5


def test_report_shows_training_time_per_model(results):
    from tlsweep.data import load_splits
    from tlsweep.report.evaluate import evaluate, load_model
    from tlsweep.report.leaderboard import display_frame, leaderboard, pick_best

    spec, result = results["vehicles_ensembles"]
    sweep = collect(result.storage)
    picks = pick_best(sweep)
    splits = load_splits(sweep.plan.data, 0)
    evals = {m: evaluate(load_model(p.checkpoint, 3), splits.test, splits.classes, 32) for m, p in picks.items()}
    board = leaderboard(sweep, picks, evals)
    assert sorted(board["model"]) == sorted(spec.model_labels())
    # the picked trial's training seconds and all of the model's trials' epoch seconds, as the sweep recorded them
    summary = result.trials.drop_duplicates("trial_id", keep="last")
    for row in board.itertuples():
        history = picks[row.model].trial.history
        assert row.train_s == pytest.approx(history["train_seconds"].sum()) and row.train_s > 0
        assert row.wall_s == pytest.approx(summary.loc[summary["model"] == row.model, "wall_s"].sum())
    assert "train s" in display_frame(board).columns
    assert (board["trainable_params"] < board["total_params"]).all()  # frozen backbones
