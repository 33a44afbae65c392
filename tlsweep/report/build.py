"""``make_report``: collect → pick by val → evaluate on test once → tables, plots, Grad-CAM, HTML."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..data import load_splits
from ..data.transforms import TransformedDataset, build_transform
from ..models import preprocessing
from ..results import TRIALS_FILE
from . import camfigs, plots
from .collect import ReportError, collect, trials_table
from .evaluate import evaluate, load_model
from .html import render
from .leaderboard import display_frame, leaderboard, pick_best, to_markdown

log = logging.getLogger(__name__)


def _test_images(dataset, indices: list[int], size: int, pre=None) -> tuple[torch.Tensor, list[int]]:
    ds = TransformedDataset(dataset, build_transform(size, pre=pre))
    items = [ds[i] for i in indices]
    return torch.stack([x for x, _ in items]), [int(y) for _, y in items]


def make_report(results_dir: str | Path, out_dir: str | Path | None = None, cam_images: int = 8,
                hparams: bool = True) -> Path:
    """Write the report of the sweep stored in ``results_dir`` into ``out_dir`` (default
    ``<results_dir>/report``); returns the path of ``report.html``."""
    start = time.perf_counter()
    sweep = collect(results_dir)
    out = Path(out_dir) if out_dir is not None else sweep.storage / "report"
    out.mkdir(parents=True, exist_ok=True)
    picks = pick_best(sweep)
    if not picks:
        statuses = ", ".join(sorted({t.status for t in sweep.trials}))
        raise ReportError(f"{sweep.storage}: no trial has a checkpoint with a finite {sweep.metric} yet "
                          f"(trial statuses: {statuses})")
    plan = sweep.plan
    splits = load_splits(plan.data, plan.seed)
    classes = splits.classes
    size = plan.data.image_size

    models, evals = {}, {}
    for name, pick in picks.items():
        models[name] = load_model(pick.checkpoint, len(classes))
        evals[name] = evaluate(models[name], splits.test, classes, size, preprocessing(plan.models_table[name]))
    board = leaderboard(sweep, picks, evals)
    board.to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.md").write_text(to_markdown(board))
    trials = trials_table(sweep)
    trials.to_csv(out / TRIALS_FILE, index=False)
    (out / "classification_report.json").write_text(json.dumps({n: e.report for n, e in evals.items()}, indent=1))

    figs = out / "figures"
    confusion = [(n, plots.confusion_png(evals[n].confusion, classes, f"{n} (test)",
                                         figs / f"confusion_{plots.slug(n)}.png")) for n in board["model"]]
    curves = [(n, plots.learning_curves_png(picks[n].trial.history, f"{n}: best trial {picks[n].trial.trial_id}",
                                            figs / f"curves_{plots.slug(n)}.png")) for n in board["model"]]
    overview = [("val vs epoch, all trials", plots.all_trials_png([(t.model, t.history) for t in sweep.trials],
                                                                  "val_acc", figs / "all_trials.png")),
                ("accuracy vs latency", plots.accuracy_latency_png(board, figs / "accuracy_latency.png"))]
    reports = "".join(f"<h3>{n}</h3><pre>{evals[n].report_text}</pre>" for n in board["model"])
    sections = [("Confusion matrices (test)", confusion, "<h3>Classification reports (test)</h3>" + reports),
                ("Learning curves (best trial per model)", curves, ""),
                ("Trials and trade-offs", overview, "")]

    best = next(iter(picks))  # best by validation
    if cam_images > 0 and len(splits.test):
        sections += _cam_sections(models, best, evals[best], splits.test, classes, size, cam_images, figs,
                                  preprocessing(plan.models_table[best]))
    if hparams:
        try:
            write_hparams_dir = out / "tensorboard"
            from .tensorboard import write_hparams

            write_hparams(sweep, write_hparams_dir)
        except Exception as err:  # noqa: BLE001 - the HParams view is optional
            log.warning("HParams summaries skipped: %s", err)
    counts = trials["status"].value_counts().to_dict()
    summary = (f"{len(sweep.trials)} trials (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
               f"); best by {sweep.metric}: {best}; test split {len(splits.test)} images; "
               f"report built in {time.perf_counter() - start:.1f}s")
    return render(out, f"tlsweep report: {plan.name}", summary,
                  display_frame(board), trials, sections)


def _cam_sections(models, best, ev, test, classes, size, count, figs, pre=None):
    indices = camfigs.pick_indices(ev.labels, count)
    images, labels = _test_images(test, indices, size, pre)
    grid = camfigs.cam_grid(models, images, labels, classes, figs / "cam_grid.png")
    depths = camfigs.cam_depths(models[best], best, images[: min(4, count)], figs / "cam_depths.png")
    out = [("Grad-CAM: test images × best models", [("Grad-CAM grid", grid)], ""),
           (f"Grad-CAM at several depths of {best}", [("Grad-CAM depths", depths)], "")]
    gallery = []
    for kind, mask in (("misclassified", ev.preds != ev.labels), ("correct", ev.preds == ev.labels)):
        idx = [int(i) for i in mask.nonzero()[0][:count]]
        if idx:
            imgs, labs = _test_images(test, idx, size, pre)
            gallery.append((kind, camfigs.gallery(models[best], imgs, labs, [int(ev.preds[i]) for i in idx],
                                                  classes, f"{best}: {kind} test images", figs / f"{kind}.png")))
    out.append((f"Galleries of {best} (true/predicted labels, Grad-CAM)", gallery, ""))
    n_occ = min(3, len(images))
    occ = camfigs.occlusion_figure(models[best], images[:n_occ], labels[:n_occ], classes, figs / "occlusion.png")
    out.append((f"Occlusion saliency of {best}", [("occlusion", occ)], ""))
    return out
