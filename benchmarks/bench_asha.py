"""Early stopping on signal: tlsweep's noise-aware ASHA against FIFO and against Ray's ASHA rule, on real sweeps.

Fixed configs (learning rates spread log-evenly over 1e-4..1e-1) of resnet18 and mobilenet_v3_small, weights
none, on shapes told apart by shape alone, two one-thread trials at a time. FIFO sweeps in several seeds give:
- noise: the spread of one config's val accuracy across seeds at each rung, against the gaps between configs;
- the rank correlation of first-rung with final val accuracy per backbone, for mobilenet_v3_small (BatchNorm
  momentum 0.01) also with precise BN off;
- Ray's ASHA rule and tlsweep's replayed on those curves over 200 orders: epoch share, how often a config that
  would finish in the top quarter is stopped, points of best val accuracy lost.
Then real tlsweep ASHA sweeps (its defaults: binomial noise band, re-judging) of the resnet18 configs in several
shuffled orders: epoch share against FIFO, and the val-picked best's test accuracy against FIFO's (McNemar)."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import numpy as np

from ._common import WORK, shapes, start_ray, sweep_spec
from .asha_replay import noise_bracket
from .noise import rank_correlation, seed_spread, top_quarter_stopped

GRACE, RF, SLOTS = 1, 3, 2
MODELS = ("resnet18", "mobilenet_v3_small")


def _sweep(name: str, root, lrs: list[float], epochs: int, scheduler: dict, models=("resnet18",), seed: int = 0,
           **search):
    from tlsweep.sweep.runner import run_sweep

    spec = sweep_spec(name, root, models=list(models), epochs=epochs, scheduler=scheduler, seed=seed,
                      search={"lr": {"grid": lrs}, "batch_size": 16, "lr_scheduler": "none", **search},
                      searcher={"type": "grid"}, max_concurrent=SLOTS, resources={"cpu": 1},
                      checkpoints={"num_to_keep": 1})
    return run_sweep(spec).trials


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in (Path(path) / "result.json").read_text().splitlines()]


def _curves(trials, lrs: list[float], model: str) -> list[list[tuple[float, float]]]:
    """Per config (in ``lrs`` order): (val_acc, seconds) of each epoch."""
    mine = trials[trials["model"] == model]
    by_lr = {row["lr"]: [(r["val_acc"], r["time_this_iter_s"]) for r in _rows(row["path"])]
             for _, row in mine.iterrows()}
    return [by_lr[lr] for lr in lrs]


def _test_correct(trials, root: Path) -> tuple[np.ndarray, str]:
    """Test-set outcomes of the trial with the best last-epoch val accuracy (its last checkpoint)."""
    from torchvision.datasets import ImageFolder

    from tlsweep.report.evaluate import load_model, predict

    last = {row["path"]: _rows(row["path"])[-1]["val_acc"] for _, row in trials.iterrows()}
    best = max(last, key=last.get)
    checkpoint = sorted(Path(best).glob("checkpoint_*/checkpoint.pt"))[-1]
    test = ImageFolder(str(root / "test"))
    labels, probs = predict(load_model(checkpoint, len(test.classes)), test, 32)
    return probs.argmax(1) == labels, Path(best).name


def run(quick: bool = False, configs: int | None = None, epochs: int | None = None, seeds: int | None = None,
        orders: int | None = None) -> list[dict]:
    from tlsweep.report.stats import accuracy_interval, mcnemar_exact

    default = (6, 3, 2, 1) if quick else (12, 9, 3, 3)
    n, epochs, seeds, orders = (given or d for given, d in zip((configs, epochs, seeds, orders), default))
    lrs = [float(f"{x:.3g}") for x in np.logspace(-4, -1, n)]
    classes, val_per_class = 6, 25 if quick else 100
    root = shapes(f"asha_shape_only_{val_per_class}", classes, train=16, val=val_per_class, test=val_per_class,
                  colour_cue=False)
    n_val = classes * val_per_class
    start_ray()
    curves = {m: [] for m in (*MODELS, "mobilenet_v3_small, precise_bn 0")}
    fifo0 = None
    for seed in range(seeds):
        trials = _sweep(f"asha_fifo_s{seed}", root, lrs, epochs, {"type": "fifo"}, MODELS, seed)
        assert trials["epochs"].sum() == len(MODELS) * n * epochs, trials[["status", "epochs", "error"]]
        fifo0 = trials if seed == 0 else fifo0
        for m in MODELS:
            curves[m].append(_curves(trials, lrs, m))
        plain = _sweep(f"asha_fifo_nobn_s{seed}", root, lrs, epochs, {"type": "fifo"}, ["mobilenet_v3_small"], seed,
                       precise_bn=0)
        curves["mobilenet_v3_small, precise_bn 0"].append(_curves(plain, lrs, "mobilenet_v3_small"))
    (WORK / "asha_curves.json").write_text(json.dumps({"lrs": lrs, "n_val": n_val, "curves": curves}))

    rungs = sorted({min(epochs, GRACE * RF ** k) for k in range(4) if GRACE * RF ** k <= epochs})
    noise_notes, replay_notes = [], []
    for m, per_seed in curves.items():
        spread = "; ".join("epoch {}: seed std {:.3f} vs gap {:.3f}".format(e, *seed_spread(per_seed, e))
                           for e in rungs)
        noise_notes.append(f"{m}: first-rung/final Spearman {rank_correlation(per_seed, GRACE):.2f}; {spread}")
        for rule, bracket in (("Ray's ASHA", None), ("tlsweep ASHA", noise_bracket(n_val))):
            got = [top_quarter_stopped(c, epochs, GRACE, RF, SLOTS, bracket=bracket) for c in per_seed]
            share, stopped, lost = (statistics.mean(x) for x in zip(*got))
            replay_notes.append(f"{m}, {rule}: {share:.2f}× epochs, top-quarter configs stopped {100 * stopped:.0f}%, "
                                f"{lost:.1f} points lost")

    fifo_r18 = fifo0[fifo0["model"] == "resnet18"]
    fifo_correct, fifo_best = _test_correct(fifo_r18, root)
    real = []  # per order: (epoch share, test acc, McNemar p)
    for k in range(orders):
        order = random.Random(k).sample(lrs, n)
        asha = _sweep(f"asha_asha{k}", root, order, epochs, {"type": "asha", "grace_period": GRACE,
                                                            "reduction_factor": RF})
        correct, _ = _test_correct(asha, root)
        real.append((asha["epochs"].sum() / (n * epochs), correct.mean(), mcnemar_exact(correct, fifo_correct)[2]))
    share = statistics.mean(r[0] for r in real)
    low, high = accuracy_interval(int(fifo_correct.sum()), len(fifo_correct))
    worst_p = min(r[2] for r in real)
    return [{
        "benchmark": "asha (noise-aware)",
        "baseline": f"FIFO: {n * epochs} epochs, val-picked best test acc {fifo_correct.mean():.3f} "
                    f"[{low:.3f}, {high:.3f}]",
        "candidate": f"tlsweep ASHA: {share * n * epochs:.0f} epochs on average over {orders} real sweep(s) in "
                     f"shuffled orders; test acc " + ", ".join(f"{r[1]:.3f} (McNemar p {r[2]:.2f})" for r in real),
        "ratio": share, "target": "≤ 0.35× of the epochs, McNemar p > 0.05",
        "met": share <= 0.35 and worst_p > 0.05,
        "notes": (f"{n} resnet18 configs × {epochs} epochs (grace {GRACE}, reduction {RF}, {SLOTS} trials at a "
                  f"time), {classes} shape-only classes, {n_val} val and {n_val} test images; per order epoch share "
                  + ", ".join(f"{r[0]:.2f}×" for r in real) + "; replayed over 200 orders on the FIFO curves of "
                  f"{seeds} seeds: " + "; ".join(replay_notes)),
    }, {
        "benchmark": "asha noise (FIFO curves)",
        "baseline": f"{seeds} seeds × {n} configs × {epochs} epochs per backbone",
        "candidate": "see notes", "ratio": float("nan"), "target": "measurement", "met": None,
        "notes": f"{n_val} val images (binomial SE at 0.5: {100 * (0.25 / n_val) ** 0.5:.1f} points); "
                 + " | ".join(noise_notes),
    }]


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for name in ("configs", "epochs", "seeds", "orders"):
        parser.add_argument(f"--{name}", type=int)
    args = parser.parse_args(argv)
    for row in run(args.quick, args.configs, args.epochs, args.seeds, args.orders):
        print("\n".join(f"{k}: {v}" for k, v in row.items()), "\n")


if __name__ == "__main__":
    main()
