"""Matplotlib (Agg) figures: confusion matrices, learning curves, all trials' val curves, accuracy vs latency."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_png(matrix: np.ndarray, classes: list[str], title: str, path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(3.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def learning_curves_png(history: pd.DataFrame, title: str, path: Path) -> Path:
    """Train/val accuracy and loss per epoch of one trial."""
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(8, 3))
    x = history["training_iteration"]
    for name, ax in (("acc", acc), ("loss", loss)):
        for split in ("train", "val"):
            col = f"{split}_{name}"
            if col in history:
                ax.plot(x, history[col].replace([np.inf, -np.inf], np.nan), marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def all_trials_png(histories: list[tuple[str, pd.DataFrame]], metric: str, path: Path) -> Path:
    """``metric`` vs epoch for every trial, coloured by model: short lines are trials ASHA stopped."""
    fig, ax = plt.subplots(figsize=(7, 4))
    models = sorted({m for m, _ in histories})
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    for model, h in histories:
        if metric in h and len(h):
            ax.plot(h["training_iteration"], h[metric], marker=".", alpha=0.7, color=colors[model])
    for m in models:
        ax.plot([], [], color=colors[m], label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of all trials (ASHA stops show as short lines)", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both (lower latency, higher accuracy), by latency."""
    order = np.argsort(latency, kind="stable")
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def accuracy_latency_png(board: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    lat, acc = board["latency_ms"].to_numpy(float), board["test_acc"].to_numpy(float)
    ax.scatter(lat, acc)
    for x, y, name in zip(lat, acc, board["model"]):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(lat, acc)
    ax.plot(lat[front], acc[front], "r--", label="Pareto front")
    ax.set_xlabel("inference latency per image (ms, batch 1)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    return save(fig, path)


def best_so_far(rows: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """``rows`` (``seconds``, ``model``, ``metric``) in time order with the running best overall and per model."""
    rows = rows.dropna(subset=[metric]).sort_values("seconds", kind="stable").reset_index(drop=True)
    best = (lambda s: s.cummax()) if mode == "max" else (lambda s: s.cummin())
    rows["best"] = best(rows[metric])
    rows["model_best"] = rows.groupby("model")[metric].transform(best)
    return rows


def best_so_far_png(rows: pd.DataFrame, ends: pd.DataFrame, metric: str, mode: str, path: Path) -> Path:
    """Best ``metric`` so far vs wall-clock minutes since the sweep started: overall and per model, with a tick
    where each trial ended (red: stopped early by the scheduler)."""
    curve = best_so_far(rows, metric, mode)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (model, part) in enumerate(curve.groupby("model", sort=False)):
        ax.step(part["seconds"] / 60, part["model_best"], where="post", color=plt.cm.tab10(i % 10), alpha=0.8,
                label=model)
    ax.step(curve["seconds"] / 60, curve["best"], where="post", color="k", lw=5, alpha=0.25, zorder=1,
            label="sweep")
    for stopped, color in ((False, "0.5"), (True, "r")):
        part = ends[ends["stopped"] == stopped]
        if len(part):
            ax.plot(part["seconds"] / 60, part[metric], "|", ms=10, color=color,
                    label="trial stopped early" if stopped else "trial ran all epochs")
    ax.set_xlabel("wall-clock minutes since the sweep started")
    ax.set_ylabel(f"best {metric} so far")
    ax.legend(fontsize=7)
    return save(fig, path)


def parallel_coordinates_png(study, metric: str, path: Path) -> Path:
    """Optuna's parallel-coordinates plot of every trial of ``study``, coloured by ``metric``."""
    import warnings

    from optuna.visualization.matplotlib import plot_parallel_coordinate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        ax = plot_parallel_coordinate(study, target_name=metric)
    fig = ax.figure
    fig.set_size_inches(max(7.0, 1.8 * (len(study.trials[0].params) + 1) if study.trials else 7.0), 4.5)
    for other in fig.axes:  # the colorbar: move it clear of the last axis's category labels
        if other is not ax and other.get_label() == "<colorbar>":
            box = other.get_position()
            other.set_position([box.x0 + 0.12, box.y0, box.width, box.height])
    ax.set_title(f"all trials, coloured by {metric}", fontsize=9)
    return save(fig, path)
