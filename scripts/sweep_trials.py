"""Run every trial of a sweep file once with the Ray-free trial API and print a Markdown table.

Each (model, grid point) group of the sweep runs one trial to ``epochs`` (sampled dimensions take their first
grid value or the middle of their range: use constants or grids for comparisons), in ``--procs`` processes; the
last epoch's model is then scored on the test split. For controlled comparisons (recipes, preprocessing) on a
machine where a Ray cluster is not wanted; `tlsweep run` is the real sweep.

    PYTHONPATH=$PWD .venv/bin/python scripts/sweep_trials.py sweeps/transfer_recipes.yaml --procs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

COLUMNS = ("freeze_depth", "lr_decay", "head_lr_mult", "unfreeze_every", "preprocess", "lr")


def _value(dist):
    from tlsweep.config.distributions import Distribution

    if not isinstance(dist, Distribution):
        return dist
    values = dist.values()
    if values:
        return values[0]
    low, high = dist.bounds()
    return (low * high) ** 0.5 if low > 0 else (low + high) / 2


def trial_configs(path: str) -> list[dict]:
    from tlsweep.config.spec import load_spec
    from tlsweep.config.space import build_groups

    plan = load_spec(path).plan()
    return [plan.trial_config({**g.fixed, **{k: _value(d) for k, d in g.sampled.items()}}).to_dict()
            for g in build_groups(plan)]


def run_one(config: dict) -> dict:
    import torch

    from tlsweep.data.preprocess import preprocess_for
    from tlsweep.report.evaluate import evaluate
    from tlsweep.trial.loop import Trial

    torch.set_num_threads(1)
    start = time.perf_counter()
    trial = Trial(config)
    history = list(trial.run())
    test = evaluate(trial.model.eval(), trial.splits.test, trial.classes, int(config["data"]["image_size"]),
                    preprocess_for(config))
    return {"model": config["model_label"], **{c: config.get(c) for c in COLUMNS},
            "val_acc": [round(h["val_acc"], 4) for h in history], "test_acc": test.accuracy,
            "test_ci": [test.ci_low, test.ci_high], "param_groups": history[-1].get("param_groups"),
            "trainable_params": history[-1].get("trainable_params"), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    configs = trial_configs(args.sweep)
    with ProcessPoolExecutor(args.procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(run_one, configs))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print("| model | " + " | ".join(COLUMNS) + " | val acc by epoch | test acc (95% CI) | groups | seconds |")
    print("|---" * (len(COLUMNS) + 5) + "|")
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS]
        print(f"| {r['model']} | " + " | ".join(cells) + f" | {' → '.join(f'{v:.3f}' for v in r['val_acc'])} | "
              f"{r['test_acc']:.3f} [{r['test_ci'][0]:.3f}, {r['test_ci'][1]:.3f}] | {r['param_groups']} | "
              f"{r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
