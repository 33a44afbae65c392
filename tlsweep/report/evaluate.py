"""Evaluate a picked checkpoint once on the held-out test split (selection happened on val before)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config.plan import TrialConfig
from ..data.transforms import TransformedDataset, build_transform
from ..models import build_model
from ..models.transfer import count_parameters
from ..trial.loop import load_checkpoint, make_loader
from .stats import accuracy_interval, macro_f1_interval


@dataclass
class Evaluation:
    labels: np.ndarray  # true class per test image
    preds: np.ndarray
    probs: np.ndarray  # (n, classes)
    accuracy: float
    ci_low: float  # Clopper–Pearson 95% interval of the accuracy
    ci_high: float
    macro_f1: float
    f1_low: float  # percentile bootstrap 95% interval of macro-F1
    f1_high: float
    report: dict  # sklearn classification_report(output_dict=True)
    report_text: str
    confusion: np.ndarray
    latency_ms: float  # batch-1 forward, best of 10
    total_params: int
    trainable_params: int

    @property
    def correct(self) -> np.ndarray:
        return self.preds == self.labels


def rebuild_model(state: dict, num_classes: int | None = None) -> nn.Module:
    """The trial's model from a loaded checkpoint dict, in eval mode. Built without pretrained weights (the
    checkpoint overwrites them, so no weights cache is needed), falling back to the stored ``weights`` when the
    architecture depends on them."""
    config = TrialConfig.from_dict(state["config"])
    num_classes = len(state["classes"]) if num_classes is None else num_classes
    freeze = config.freeze_depth
    model = build_model(config.model.replace(weights="none"), num_classes, freeze)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        model = build_model(config.model, num_classes, freeze)
        model.load_state_dict(state["model"])
    return model.eval()


def load_model(checkpoint: str | Path, num_classes: int) -> nn.Module:
    """Rebuild the trial's model from the config stored in the checkpoint; tensors only (weights_only)."""
    return rebuild_model(load_checkpoint(checkpoint), num_classes)


@torch.no_grad()
def predict(model: nn.Module, dataset, image_size: int, batch_size: int = 64,
            pre=None) -> tuple[np.ndarray, np.ndarray]:
    loader = make_loader(TransformedDataset(dataset, build_transform(image_size, pre=pre)), batch_size, False, 0)
    probs, labels = [], []
    for images, y in loader:
        probs.append(model(images).softmax(dim=1))
        labels.append(y)
    return torch.cat(labels).numpy(), torch.cat(probs).numpy()


@torch.no_grad()
def latency_ms(model: nn.Module, image_size: int, repeats: int = 10) -> float:
    """Batch-1 forward time, best of ``repeats`` (robust to other load on the machine)."""
    x = torch.randn(1, 3, image_size, image_size)
    for _ in range(2):  # warm-up (first calls build kernels)
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(min(times))


def evaluate(model: nn.Module, dataset, classes: list[str], image_size: int, pre=None) -> Evaluation:
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    labels, probs = predict(model, dataset, image_size, pre=pre)
    preds = probs.argmax(axis=1)
    correct = preds == labels
    low, high = accuracy_interval(int(correct.sum()), len(correct))
    f1_low, f1_high = macro_f1_interval(labels, preds, len(classes))
    ids = list(range(len(classes)))
    kw = dict(labels=ids, target_names=classes, zero_division=0)
    total, trainable = count_parameters(model)
    return Evaluation(
        labels, preds, probs, float(correct.mean()) if len(correct) else float("nan"), low, high,
        float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)), f1_low, f1_high,
        classification_report(labels, preds, output_dict=True, **kw), classification_report(labels, preds, **kw),
        confusion_matrix(labels, preds, labels=ids), latency_ms(model, image_size), total, trainable)
