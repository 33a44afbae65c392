"""The page's sections, in order. Each builder takes the ``Context`` of one report and returns its sections
(none when it has nothing to show); add a panel by writing a builder and listing it in ``SECTIONS``."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from . import camfigs, plots
from .collect import Sweep
from .cost import TOTAL
from .evaluate import Evaluation
from .html import Section, table
from .importance import Importance
from .leaderboard import Pick, display_frame
from .pareto import pareto_section
from .posthoc_panels import posthoc_sections
from .stats import ALPHA, Comparison


@dataclass
class Context:
    """Everything a section may show, computed once by ``make_report``."""

    sweep: Sweep
    out: Path
    picks: dict[str, Pick]  # best model (by validation) first
    evals: dict[str, Evaluation]
    comparisons: dict[str, Comparison]
    board: pd.DataFrame
    trials: pd.DataFrame
    importances: dict[str, Importance]
    costs: pd.DataFrame
    classes: list[str]
    image_size: int
    test_set: object
    models: dict[str, torch.nn.Module]
    cam_images: int
    study: object = None  # every done trial as one Optuna study (model as a parameter)
    preprocess: object = None  # the best model's preprocessing (``tlsweep.models.preprocessing``)
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        return next(iter(self.picks))

    @property
    def figs(self) -> Path:
        return self.out / "figures"


def leaderboard_section(ctx: Context) -> list[Section]:
    return [Section("Leaderboard", html=table(display_frame(ctx.board), "leaderboard"), intro=(
        "Best checkpoint per model picked by the validation metric (rows in that order); the test split is used "
        "once, for the test columns. Accuracy intervals are Clopper–Pearson, macro-F1 intervals a percentile "
        f"bootstrap. 'p vs best' is McNemar's exact test of each model against the best on the same test images, "
        f"Holm-corrected over the comparisons; '≈ best' = not distinguishable from it at α = {ALPHA:g}."))]


def importance_section(ctx: Context) -> list[Section]:
    rows = []
    for model, imp in ctx.importances.items():
        if imp.importances:
            rows += [{"model": model, "parameter": k, "importance": f"{v:.3f}", "trials": imp.trials, "note": imp.note}
                     for k, v in imp.importances.items()]
        else:
            rows.append({"model": model, "parameter": "-", "importance": "-", "trials": imp.trials, "note": imp.note})
    images = []
    if ctx.study is not None and len(ctx.study.trials) >= 2:
        images.append(("parallel coordinates", plots.parallel_coordinates_png(ctx.study, ctx.sweep.metric,
                                                                               ctx.figs / "parallel_coordinates.png")))
    from .cost import timeline

    points, ends = timeline(ctx.sweep)
    if len(points):
        png = plots.best_so_far_png(points, ends, ctx.sweep.metric, ctx.sweep.mode, ctx.figs / "best_so_far.png")
        images.append(("best so far vs wall-clock", png))
    frame = pd.DataFrame(rows, columns=["model", "parameter", "importance", "trials", "note"])
    return [Section("What mattered", images, table(frame, "importance"), intro=(
        f"Hyperparameter importance per model: Optuna's fANOVA evaluator over the model's done trials (value: each "
        f"trial's best {ctx.sweep.metric}; trials stopped early count with the best they reached), normalized to "
        f"sum 1. The parallel-coordinates plot shows every done trial; best-so-far shows when the sweep found its "
        f"best (red ticks: trials the scheduler stopped early)."))]


def cost_section(ctx: Context) -> list[Section]:
    frame = ctx.costs.copy()
    for c in ("trial_hours", "cpu_hours", "gpu_hours"):
        frame[c] = frame[c].map(lambda v: f"{v:.4g}")
    for c in ("cpu_per_trial", "gpu_per_trial"):
        frame[c] = frame[c].map(lambda v: "-" if v != v else f"{v:g}")
    return [Section("Cost", html=table(frame, "cost"), intro=(
        "CPU- and GPU-hours: each trial's resources (the sweep's per-model `resources`) × its running time "
        "(Tune's time_total_s: training, validation and checkpoints; worker start-up not counted). "
        f"The '{TOTAL}' row is the sweep."))]


def test_sections(ctx: Context) -> list[Section]:
    names = list(ctx.board["model"])
    confusion = [(n, plots.confusion_png(ctx.evals[n].confusion, ctx.classes, f"{n} (test)",
                                         ctx.figs / f"confusion_{plots.slug(n)}.png")) for n in names]
    reports = "".join(f"<h3>{html.escape(n)}</h3><pre>{html.escape(ctx.evals[n].report_text)}</pre>" for n in names)
    curves = [(n, plots.learning_curves_png(ctx.picks[n].trial.history,
                                            f"{n}: best trial {ctx.picks[n].trial.trial_id}",
                                            ctx.figs / f"curves_{plots.slug(n)}.png")) for n in names]
    overview = [("val vs epoch, all trials", plots.all_trials_png([(t.model, t.history) for t in ctx.sweep.trials],
                                                                  "val_acc", ctx.figs / "all_trials.png")),
                ("accuracy vs latency", plots.accuracy_latency_png(ctx.board, ctx.figs / "accuracy_latency.png"))]
    return [Section("Confusion matrices (test)", confusion, "<h3>Classification reports (test)</h3>" + reports),
            Section("Learning curves (best trial per model)", curves),
            Section("Trials and trade-offs", overview)]


def _test_images(ctx: Context, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
    from ..data.transforms import TransformedDataset, build_transform

    ds = TransformedDataset(ctx.test_set, build_transform(ctx.image_size, pre=ctx.preprocess))
    items = [ds[i] for i in indices]
    return torch.stack([x for x, _ in items]), [int(y) for _, y in items]


def cam_sections(ctx: Context) -> list[Section]:
    count, best, ev = ctx.cam_images, ctx.best, ctx.evals[ctx.best]
    if count <= 0 or not len(ev.labels):
        return []
    images, labels = _test_images(ctx, camfigs.pick_indices(ev.labels, count))
    grid = camfigs.cam_grid(ctx.models, images, labels, ctx.classes, ctx.figs / "cam_grid.png")
    depths = camfigs.cam_depths(ctx.models[best], best, images[: min(4, count)], ctx.figs / "cam_depths.png")
    out = [Section("Grad-CAM: test images × best models", [("Grad-CAM grid", grid)], intro=(
               "Each model's CAM layer is the deepest stage whose feature map is at least 7×7 at the sweep's image "
               "size (the registry's layer when that is; column heads name it).")),
           Section(f"Grad-CAM at several depths of {best}", [("Grad-CAM depths", depths)])]
    gallery = []
    for kind, mask in (("misclassified", ev.preds != ev.labels), ("correct", ev.preds == ev.labels)):
        idx = camfigs.pick_indices(ev.labels, count, among=mask)
        if idx:
            imgs, labs = _test_images(ctx, idx)
            gallery.append((kind, camfigs.gallery(ctx.models[best], imgs, labs, [int(ev.preds[i]) for i in idx],
                                                  ctx.classes, f"{best}: {kind} test images",
                                                  ctx.figs / f"{kind}.png")))
    out.append(Section(f"Galleries of {best} (true/predicted labels, Grad-CAM)", gallery,
                       intro="Images sampled across the true classes."))
    n_occ = min(3, len(images))
    occ = camfigs.occlusion_figure(ctx.models[best], images[:n_occ], labels[:n_occ], ctx.classes,
                                   ctx.figs / "occlusion.png")
    out.append(Section(f"Occlusion saliency of {best}", [("occlusion", occ)]))
    return out


def trials_section(ctx: Context) -> list[Section]:
    return [Section("All trials", html=table(ctx.trials, "trials", na_rep="-", float_format=lambda v: f"{v:.4g}"))]


SECTIONS: list[Callable[[Context], list[Section]]] = [
    leaderboard_section, posthoc_sections, importance_section, cost_section, test_sections, cam_sections, pareto_section,
    trials_section,
]


def build_sections(ctx: Context, builders=None) -> list[Section]:
    out: list[Section] = []
    for builder in SECTIONS if builders is None else builders:
        out += builder(ctx)
    return out
