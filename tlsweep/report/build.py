"""``make_report``: collect → pick by val → evaluate on test once → compare, importance, cost → summary,
sections, HTML."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch

from ..config.sections import resolve_mode
from ..data import load_splits
from ..models import preprocessing
from ..results.layout import TRIALS_FILE
from .collect import ReportError, collect, trials_table
from .cost import cost_table, sweep_wall_seconds
from .evaluate import evaluate, load_model
from .html import render
from .importance import model_importance, sweep_study
from .leaderboard import leaderboard, pick_best, to_markdown
from .panels import Context, build_sections
from .stats import compare_to_best, comparison_frame
from .summary import summarize, to_html

log = logging.getLogger(__name__)


def _pre(plan, label: str):
    """The preprocessing a model's trials used (the mode the sweep resolved for it)."""
    model = plan.models_table[label]
    return preprocessing(model, resolve_mode(plan.data, model))


def make_report(results_dir: str | Path, out_dir: str | Path | None = None, cam_images: int = 8,
                hparams: bool = True, threads: int | None = None, soups: bool | None = None) -> Path:
    """Write the report of a sweep: each model picked on validation, evaluated once on test, compared, explained.

    Args:
        results_dir: The sweep's local storage folder (finished, still running, or copied).
        out_dir: Where to write; default ``<results_dir>/report``.
        cam_images: Test images in the Grad-CAM grid and galleries.
        hparams: Write TensorBoard HParams runs for trials without Tune's event files.
        threads: Torch threads while building (default ``$TLSWEEP_TORCH_THREADS``, else torch's default); 1 is
            much faster on cores other work shares.
        soups: Build soups, the post-hoc ensemble and temperatures into ``<out_dir>/posthoc`` (default: the
            sweep file's ``posthoc.enabled``; skipped with a note past ``posthoc.report_budget_s``).

    Returns:
        The path of ``report.html``.

    Raises:
        ReportError: The folder holds no sweep, no trial, or no trial with a usable checkpoint yet.
        DataError: The sweep's test data cannot be read.
    """
    threads = threads or int(os.environ.get("TLSWEEP_TORCH_THREADS", 0)) or None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _make_report(results_dir, out_dir, cam_images, hparams, soups)
    finally:
        torch.set_num_threads(before)


def _posthoc(sweep, out: Path, splits, evals, enabled: bool | None) -> tuple[object, str | None]:
    """(``tlsweep.posthoc`` result or None, a note when skipped)."""
    from ..posthoc.combine import PosthocSkipped, build_posthoc

    config = sweep.plan.posthoc
    if not (config.enabled if enabled is None else enabled):
        return None, None
    try:
        return build_posthoc(sweep.storage, out / "posthoc", splits, {n: e.probs for n, e in evals.items()},
                             budget_s=config.report_budget_s, config=config), None
    except PosthocSkipped as err:
        log.warning("%s", err)
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - the report stands without them; `tlsweep soup` shows the traceback
        log.warning("soups and ensembles failed: %s: %s", type(err).__name__, err)
        return None, f"soups and ensemble selection failed ({type(err).__name__}: {err}); run `tlsweep soup`"


def _make_report(results_dir, out_dir, cam_images: int, hparams: bool, soups: bool | None = None) -> Path:
    start = time.perf_counter()
    sweep = collect(results_dir)
    out = Path(out_dir) if out_dir is not None else sweep.storage / "report"
    out.mkdir(parents=True, exist_ok=True)
    picks = pick_best(sweep)
    if not picks:
        statuses = ", ".join(sorted({t.status for t in sweep.trials}))
        meets = " that meets the sweep's constraints" if sweep.plan.constraints else ""
        raise ReportError(f"{sweep.storage}: no trial{meets} has a checkpoint with a finite {sweep.metric} yet "
                          f"(trial statuses: {statuses})")
    plan = sweep.plan
    splits = load_splits(plan.data, plan.seed)
    classes = splits.classes
    size = plan.data.image_size

    models, evals = {}, {}
    for name, pick in picks.items():
        models[name] = load_model(pick.checkpoint, len(classes))
        evals[name] = evaluate(models[name], splits.test, classes, size, _pre(plan, name))
    best = next(iter(picks))  # best by validation
    comparisons = compare_to_best({m: e.correct for m, e in evals.items()}, best)
    board = leaderboard(sweep, picks, evals, comparisons)
    posthoc, posthoc_note = _posthoc(sweep, out, splits, evals, soups)
    importances = {m: model_importance(sweep, m) for m in dict.fromkeys(t.model for t in sweep.trials)}
    costs = cost_table(sweep)
    trials = trials_table(sweep)

    with_posthoc(board, posthoc).to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.md").write_text(to_markdown(board))
    trials.to_csv(out / TRIALS_FILE, index=False)
    costs.to_csv(out / "cost.csv", index=False)
    comparison_frame(comparisons).to_csv(out / "comparisons.csv", index=False)
    (out / "importance.json").write_text(json.dumps(
        {m: {"importances": i.importances, "trials": i.trials, "note": i.note} for m, i in importances.items()},
        indent=1))
    (out / "classification_report.json").write_text(json.dumps({n: e.report for n, e in evals.items()}, indent=1))
    summary = summarize(sweep.metric, best, float(picks[best].val[sweep.metric]), evals[best].correct,
                        (evals[best].ci_low, evals[best].ci_high), comparisons, importances.get(best), costs,
                        sweep_wall_seconds(sweep))
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))

    ctx = Context(sweep, out, picks, evals, comparisons, board, trials, importances, costs, classes, size,
                  splits.test, models, cam_images, study=sweep_study(sweep),
                  preprocess=_pre(plan, best), extra={"posthoc": posthoc, "posthoc_note": posthoc_note})
    sections = build_sections(ctx)
    if hparams:
        try:
            from .tensorboard import write_hparams

            write_hparams(sweep, out / "tensorboard")
        except Exception as err:  # noqa: BLE001 - the HParams view is optional
            log.warning("HParams summaries skipped: %s", err)
    counts = trials["status"].value_counts().to_dict()
    footer = (f"{len(sweep.trials)} trials (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
              f"); best by {sweep.metric}: {best}; test split {len(splits.test)} images; "
              f"report built in {time.perf_counter() - start:.1f}s")
    return render(out, f"tlsweep report: {plan.name}", to_html(summary), sections, footer)


def with_posthoc(board, posthoc):
    """The leaderboard with a ``kind`` column (``single``), calibration columns for the single models, and the
    soups' and ensemble's rows (marked by ``kind``) appended."""
    import pandas as pd

    board = board.assign(kind="single")
    if posthoc is None or not len(posthoc.frame):
        return board
    frame = posthoc.frame
    singles = frame[frame["kind"] == "single"].set_index("model")
    for c in ("temperature", "ece_test", "ece_test_calibrated"):
        board[c] = board["model"].map(singles[c])
    extra = frame[frame["kind"] != "single"]
    return pd.concat([board, extra[[c for c in extra.columns if c in board.columns or c in (
        "build_s", "ingredients_tried", "ingredients_accepted", "members", "verdict")]]], ignore_index=True)
