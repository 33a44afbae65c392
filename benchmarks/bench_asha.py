"""Early stopping on signal: tlsweep's noise-aware ASHA against FIFO and against Ray's ASHA rule, on real sweeps.

    python -m benchmarks.bench_asha [--task transfer|shapes|pilot|all] [--quick] [--reuse] [--noise-z Z] ...

Three tasks, two one-thread trials at a time:
- ``transfer`` (the headline): a learning-rate sweep fine-tuning mobilenet_v2 (ImageNet weights) on Fashion-MNIST,
  learning rates spread log-evenly over 1e-4..1e-1, what a practitioner sweeps first.
- ``shapes``: resnet18 and mobilenet_v3_small from scratch on shapes told apart by shape alone, the same learning
  rates: curves near chance, where noise dominates (and, for mobilenet_v3_small, precise BN on and off).
- ``pilot``: issue 23's pilot: mobilenet_v2 (ImageNet), freeze depth {0, 0.5, 1}, lr log-uniform [3e-4, 3e-3],
  3 epochs, grace 1, factor 2, 8 Optuna-drawn trials (seed 0), 500 val images: FIFO against tlsweep's ASHA on the
  same configs, and whether the configs FIFO finds best survive ASHA.

For ``transfer`` and ``shapes``, FIFO sweeps in several seeds give:
- noise: the spread of one config's val accuracy across seeds at each rung, against the gaps between configs;
- the rank correlation of first-rung with final val accuracy per backbone;
- Ray's ASHA rule and tlsweep's replayed on those curves over 200 orders: epoch share, how often a config that
  would finish in the top quarter is stopped, points of best val accuracy lost.
Then real tlsweep ASHA sweeps (its defaults: binomial noise band, re-judging) of the first backbone's configs in
several shuffled orders: epoch share against FIFO, and the val-picked best's test accuracy against FIFO's
(McNemar)."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import WORK, shapes, start_ray, sweep_spec
from .asha_replay import noise_bracket, replay
from .noise import rank_correlation, seed_spread, top_quarter_stopped

SLOTS = 2
NO_BN = "mobilenet_v3_small, precise_bn 0"


@dataclass(frozen=True)
class Task:
    """One benchmark task: its models (label → weights), data and the fixed part of its sweeps."""

    name: str
    models: dict[str, str]
    grace: int = 1
    rf: int = 3
    search: dict = field(default_factory=dict)
    batch_size: int = 32
    val: int = 1000  # Fashion-MNIST val images (full size)
    seeds: int = 2  # FIFO seeds (full size)
    shapes_data: bool = False  # generated shapes (weights none) rather than Fashion-MNIST (squashed to 32 px)
    no_bn: bool = False  # also record mobilenet_v3_small's curves with precise BN off
    about: str = ""

    def data(self, quick: bool) -> tuple[Path, int]:
        """(image-folder root with train/val/test, val images)."""
        if self.shapes_data:
            per_class = 25 if quick else 100
            return shapes(f"asha_shape_only_{per_class}", 6, train=16, val=per_class, test=per_class,
                          colour_cue=False), 6 * per_class
        from .bench_vs_tune import prepare_data

        sizes = {"train": 1000, "val": 500, "test": 500} if quick else \
            {"train": 2000, "val": self.val, "test": 1000}
        return prepare_data(sizes), sizes["val"]


TASKS = {
    "transfer": Task("transfer", {"mobilenet_v2": "IMAGENET1K_V1"}, search={"freeze_depth": 0.5},
                     about="mobilenet_v2 ImageNet, freeze depth 0.5, Fashion-MNIST at 32 px"),
    "shapes": Task("shapes", {"resnet18": "none", "mobilenet_v3_small": "none"}, batch_size=16, shapes_data=True,
                   seeds=3, no_bn=True,
                   about="weights none, 6 shape-only classes at 32 px, 96 train images"),
    "pilot": Task("pilot", {"mobilenet_v2": "IMAGENET1K_V1"}, rf=2, val=500,
                  about="issue 23's pilot: mobilenet_v2 ImageNet, freeze {0, 0.5, 1}, lr log-uniform [3e-4, 3e-3], "
                        "Fashion-MNIST at 32 px"),
}


def _sweep(name: str, task: Task, root: Path, epochs: int, scheduler: dict, models=None, seed: int = 0,
           search: dict | None = None, searcher: dict | None = None, num_samples: int = 1, **extra):
    from tlsweep.sweep.runner import run_sweep

    models = [{"name": m, "weights": task.models.get(m, "none")} for m in models or task.models]
    data = {"root": str(root), "image_size": 32, "augment": "none",
            **({} if task.shapes_data else {"preprocess": "squash"})}
    if scheduler["type"] == "asha":
        scheduler = {**scheduler, "grace_period": task.grace, "reduction_factor": task.rf}
    spec = sweep_spec(name, root, data=data, models=models, epochs=epochs, scheduler=scheduler, seed=seed,
                      search={"batch_size": task.batch_size, "lr_scheduler": "none", **task.search, **(search or {}),
                              **extra},
                      searcher=searcher or {"type": "grid"}, num_samples=num_samples, max_concurrent=SLOTS,
                      resources={"cpu": 1}, checkpoints={"num_to_keep": 1})
    return run_sweep(spec, progress="none").trials


def _lr_sweep(name, task, root, lrs, epochs, scheduler, models=None, seed=0, reuse=False, **extra):
    """An lr-grid sweep; with ``reuse``, the trials table of an earlier sweep of that name when it finished with
    the same learning rates and epochs."""
    import pandas as pd

    from tlsweep.results.layout import SUMMARY_FILE

    summary = _storage(name) / SUMMARY_FILE
    if reuse and summary.is_file():
        done = pd.read_csv(summary)
        if set(done["lr"]) == set(lrs) and (done["epochs"] == epochs).all():
            return done
    return _sweep(name, task, root, epochs, scheduler, models, seed, search={"lr": {"grid": lrs}}, **extra)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in (Path(path) / "result.json").read_text().splitlines()]


def _curves(trials, lrs: list[float], model: str) -> list[list[tuple[float, float]]]:
    """Per config (in ``lrs`` order): (val_acc, seconds) of each epoch."""
    mine = trials[trials["model"] == model]
    by_lr = {row["lr"]: [(r["val_acc"], r["time_this_iter_s"]) for r in _rows(row["path"])]
             for _, row in mine.iterrows()}
    return [by_lr[lr] for lr in lrs]


def _test_correct(trials, storage: Path, root: Path) -> tuple[np.ndarray, str]:
    """Test-set outcomes of the trial with the best last-epoch val accuracy (its last checkpoint), with the
    preprocessing its sweep used."""
    from torchvision.datasets import ImageFolder

    from tlsweep.config.sections import resolve_mode
    from tlsweep.models import preprocessing
    from tlsweep.report.collect import collect
    from tlsweep.report.evaluate import load_model, predict

    last = {row["path"]: (_rows(row["path"])[-1]["val_acc"], row["model"]) for _, row in trials.iterrows()}
    best = max(last, key=lambda p: last[p][0])
    plan = collect(storage).plan
    model = plan.models_table[last[best][1]]
    checkpoint = sorted(Path(best).glob("checkpoint_*/checkpoint.pt"))[-1]
    test = ImageFolder(str(root / "test"))
    labels, probs = predict(load_model(checkpoint, len(test.classes)), test, plan.data.image_size,
                            pre=preprocessing(model, resolve_mode(plan.data, model)))
    return probs.argmax(1) == labels, Path(best).name


def _asha(noise_z: float | None) -> dict:
    return {"type": "asha", **({} if noise_z is None else {"noise_z": noise_z})}


def _z_label(noise_z: float | None) -> str:
    return "" if noise_z is None else f" (noise_z {noise_z:g})"


def _storage(name: str) -> Path:
    return WORK / "results" / name


def run_lr_task(task: Task, quick: bool = False, configs: int | None = None, epochs: int | None = None,
                seeds: int | None = None, orders: int | None = None, reuse: bool = False,
                noise_z: float | None = None) -> list[dict]:
    """``reuse``: take the FIFO sweeps of an earlier run with the same sizes (to re-run only the ASHA sweeps);
    ``noise_z``: the real ASHA sweeps' ``scheduler.noise_z`` (default tlsweep's)."""
    from tlsweep.report.stats import accuracy_interval, mcnemar_exact

    default = (6, 3, 2, 1) if quick else (12, 9, task.seeds, 3)
    n, epochs, seeds, orders = (given or d for given, d in zip((configs, epochs, seeds, orders), default))
    lrs = [float(f"{x:.3g}") for x in np.logspace(-4, -1, n)]
    root, n_val = task.data(quick)
    start_ray()
    models = list(task.models)
    curves = {m: [] for m in (*models, *([NO_BN] if task.no_bn else []))}
    fifo0 = None
    for seed in range(seeds):
        name = f"asha_{task.name}_fifo_s{seed}"
        trials = _lr_sweep(name, task, root, lrs, epochs, {"type": "fifo"}, seed=seed, reuse=reuse)
        assert trials["epochs"].sum() == len(models) * n * epochs, trials[["status", "epochs", "error"]]
        fifo0 = fifo0 if fifo0 is not None else (trials, _storage(name))
        for m in models:
            curves[m].append(_curves(trials, lrs, m))
        if task.no_bn:
            plain = _lr_sweep(f"asha_{task.name}_fifo_nobn_s{seed}", task, root, lrs, epochs, {"type": "fifo"},
                              ["mobilenet_v3_small"], seed, reuse, precise_bn=0)
            curves[NO_BN].append(_curves(plain, lrs, "mobilenet_v3_small"))
    (WORK / f"asha_curves_{task.name}.json").write_text(json.dumps({"lrs": lrs, "n_val": n_val, "curves": curves}))

    grace, rf = task.grace, task.rf
    rungs = sorted({min(epochs, grace * rf ** k) for k in range(4) if grace * rf ** k <= epochs})
    noise_notes, replay_notes = [], []
    for m, per_seed in curves.items():
        spread = "; ".join("epoch {}: seed std {:.3f} vs gap {:.3f}".format(e, *seed_spread(per_seed, e))
                           for e in rungs)
        noise_notes.append(f"{m}: first-rung/final Spearman {rank_correlation(per_seed, grace):.2f}; {spread}")
        for rule, bracket in (("Ray's ASHA", None), ("tlsweep ASHA", noise_bracket(n_val, z=noise_z))):
            got = [top_quarter_stopped(c, epochs, grace, rf, SLOTS, bracket=bracket) for c in per_seed]
            share, stopped, lost = (statistics.mean(x) for x in zip(*got))
            replay_notes.append(f"{m}, {rule}: {share:.2f}× epochs, top-quarter configs stopped {100 * stopped:.0f}%, "
                                f"{lost:.1f} points lost")

    first = models[0]
    fifo_trials, fifo_storage = fifo0
    fifo_correct, _ = _test_correct(fifo_trials[fifo_trials["model"] == first], fifo_storage, root)
    real = []  # per order: (epoch share, test acc, McNemar p, wall s)
    for k in range(orders):
        order = random.Random(k).sample(lrs, n)
        name = f"asha_{task.name}_asha{k}" + ("" if noise_z is None else f"_z{noise_z:g}")
        asha = _lr_sweep(name, task, root, order, epochs, _asha(noise_z), [first])
        correct, _ = _test_correct(asha, _storage(name), root)
        real.append((asha["epochs"].sum() / (n * epochs), correct.mean(), mcnemar_exact(correct, fifo_correct)[2]))
        print(f"[asha] {task.name} order {k}: {real[-1][0]:.2f}× epochs, test {real[-1][1]:.3f}, "
              f"McNemar p {real[-1][2]:.2f}", flush=True)
    share = statistics.mean(r[0] for r in real)
    low, high = accuracy_interval(int(fifo_correct.sum()), len(fifo_correct))
    worst_p = min(r[2] for r in real)
    return [{
        "benchmark": f"asha ({task.name})",
        "baseline": f"FIFO: {n * epochs} epochs, val-picked best test acc {fifo_correct.mean():.3f} "
                    f"[{low:.3f}, {high:.3f}]",
        "candidate": f"tlsweep ASHA{_z_label(noise_z)}: {share * n * epochs:.0f} epochs on average over {orders} "
                     "real sweep(s) in shuffled orders; test acc "
                     + ", ".join(f"{r[1]:.3f} (McNemar p {r[2]:.2f})" for r in real),
        "ratio": share, "target": "≤ 0.35× of the epochs, McNemar p > 0.05",
        "met": share <= 0.35 and worst_p > 0.05,
        "notes": (f"{n} {first} configs (lr 1e-4..1e-1) × {epochs} epochs (grace {grace}, reduction {rf}, {SLOTS} "
                  f"trials at a time), {task.about}, {n_val} val and test images; per order epoch share "
                  + ", ".join(f"{r[0]:.2f}×" for r in real) + "; replayed over 200 orders on the FIFO curves of "
                  f"{seeds} seed(s): " + "; ".join(replay_notes)),
    }, {
        "benchmark": f"asha noise ({task.name}, FIFO curves)",
        "baseline": f"{seeds} seeds × {n} configs × {epochs} epochs per backbone",
        "candidate": "see notes", "ratio": float("nan"), "target": "measurement", "met": None,
        "notes": f"{n_val} val images (binomial SE at 0.5: {100 * (0.25 / n_val) ** 0.5:.1f} points); "
                 + " | ".join(noise_notes),
    }]


def run_pilot(quick: bool = False, trials: int | None = None, noise_z: float | None = None) -> list[dict]:
    """FIFO and tlsweep's ASHA over the pilot's space with the same Optuna-drawn configs (seed 0, all drawn at
    random: fewer than TPE's startup trials); which of FIFO's best configs ASHA ran to the end."""
    from tlsweep.report.stats import mcnemar_exact

    task = TASKS["pilot"]
    trials = trials or (4 if quick else 8)
    epochs = 2 if quick else 3
    root, n_val = task.data(quick)
    start_ray()
    search = {"freeze_depth": {"choice": [0, 0.5, 1]}, "lr": {"loguniform": [3e-4, 3e-3]}}
    searcher = {"type": "optuna", "seed": 0}
    runs = {}
    for sched, scheduler in (("fifo", {"type": "fifo"}), ("asha", _asha(noise_z))):
        name = f"asha_pilot_{sched}"
        got = _sweep(name, task, root, epochs, scheduler, search=search, searcher=searcher, num_samples=trials)
        runs[sched] = (got, _storage(name))

    def key(row):
        return round(float(row["lr"]), 12), float(row["freeze_depth"])

    fifo, asha = runs["fifo"][0], runs["asha"][0]
    final = {key(r): _rows(r["path"])[-1]["val_acc"] for _, r in fifo.iterrows()}
    ran = {key(r): int(r["epochs"]) for _, r in asha.iterrows()}
    assert set(final) == set(ran), "FIFO and ASHA drew different configs"
    top = sorted(final, key=final.get, reverse=True)[:2]
    replays = {}
    fifo_curves = [[(r["val_acc"], r["time_this_iter_s"]) for r in _rows(row["path"])] for _, row in fifo.iterrows()]
    order_final = [c[-1][0] for c in fifo_curves]
    top_idx = sorted(range(len(order_final)), key=lambda i: -order_final[i])[:2]
    for rule, bracket in (("Ray's ASHA", None), ("tlsweep ASHA", noise_bracket(n_val, z=noise_z))):
        stops, shares = [], []
        for k in range(200):
            order = random.Random(k).sample(range(len(fifo_curves)), len(fifo_curves))
            ep = replay(fifo_curves, order, epochs, task.grace, task.rf, SLOTS, bracket=bracket)
            stops.append(sum(ep[i] < epochs for i in top_idx) / len(top_idx))
            shares.append(sum(ep.values()) / (len(fifo_curves) * epochs))
        replays[rule] = (statistics.mean(shares), statistics.mean(stops))
    fifo_correct, _ = _test_correct(fifo, runs["fifo"][1], root)
    asha_correct, _ = _test_correct(asha, runs["asha"][1], root)
    p = mcnemar_exact(asha_correct, fifo_correct)[2]
    survived = sum(ran[c] == epochs for c in top)
    return [{
        "benchmark": "asha (pilot)",
        "baseline": f"FIFO: {trials * epochs} epochs, best configs (lr, freeze) "
                    + ", ".join(f"{c[0]:.3g}/{c[1]:g} val {final[c]:.3f}" for c in top)
                    + f", val-picked test acc {fifo_correct.mean():.3f}",
        "candidate": f"tlsweep ASHA{_z_label(noise_z)}: {asha['epochs'].sum()} epochs; FIFO's two best ran "
                     + ", ".join(f"{ran[c]}" for c in top) + f" of {epochs} epochs; val-picked test acc "
                     f"{asha_correct.mean():.3f} (McNemar p {p:.2f})",
        "ratio": asha["epochs"].sum() / (trials * epochs), "target": "FIFO's two best configs survive",
        "met": survived == len(top),
        "notes": f"{trials} trials × {epochs} epochs (grace {task.grace}, reduction {task.rf}), {n_val} val images; "
                 "replayed over 200 orders on the FIFO curves, share of epochs / share of FIFO's two best stopped: "
                 + "; ".join(f"{rule} {s:.2f}× / {100 * k:.0f}%" for rule, (s, k) in replays.items()),
    }]


def run(quick: bool = False, task: str = "transfer", **sizes) -> list[dict]:
    """``task``: a ``TASKS`` name or ``all``; ``sizes``: configs, epochs, seeds, orders, reuse (lr tasks) and
    noise_z (every task's ASHA sweeps)."""
    rows = []
    for name in (TASKS if task == "all" else [task]):
        if name == "pilot":
            rows += run_pilot(quick, noise_z=sizes.get("noise_z"))
        else:
            rows += run_lr_task(TASKS[name], quick, **sizes)
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--task", default="transfer", choices=[*TASKS, "all"])
    for name in ("configs", "epochs", "seeds", "orders"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--reuse", action="store_true", help="reuse the FIFO sweeps of an earlier run")
    parser.add_argument("--noise-z", type=float, help="scheduler.noise_z of the ASHA sweeps (default tlsweep's)")
    args = parser.parse_args(argv)
    sizes = {k: getattr(args, k) for k in ("configs", "epochs", "seeds", "orders", "reuse", "noise_z")}
    for row in run(args.quick, args.task, **sizes):
        print("\n".join(f"{k}: {v}" for k, v in row.items()), "\n")


if __name__ == "__main__":
    main()
