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
