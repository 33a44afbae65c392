"""Predict classes of image files with a trained checkpoint (any path ``resolve_checkpoint`` understands).

>>> predictor = load_predictor("results/my_sweep")          # best trial of the sweep by val metric
>>> predictor.predict(["cat.jpg"], top_k=3)[0].label
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..config.plan import TrialConfig
from ..config.sections import ConfigError
from ..data.images import open_rgb, to_rgb
from ..data.transforms import build_transform
from ..models import IMAGENET, Preprocessing, preprocessing
from ..posthoc.ensemble_checkpoint import is_ensemble_checkpoint
from ..results.checkpoints import (
    CheckpointError,
    Resolved,
    load_error,
    resolve_checkpoint,
)
from ..trial.loop import load_checkpoint, resolve_device


class PredictError(CheckpointError):
    """Images or checkpoint unusable for prediction."""


@dataclass
class Prediction:
    """One image's predicted class: ``label`` with its ``probability``, and the ``top_k`` (label, probability)
    pairs, best first."""

    path: str
    label: str
    probability: float
    top_k: list[tuple[str, float]] = field(default_factory=list)  # best first, includes (label, probability)


@dataclass
class Predictor:
    """A trained model with what it needs to turn image files into class probabilities."""

    model: torch.nn.Module  # eval mode; takes normalized (N, 3, S, S) tensors, returns logits
    classes: list[str]
    image_size: int
    model_label: str
    checkpoint: Resolved
    config: TrialConfig
    device: torch.device = torch.device("cpu")
    pre: Preprocessing = IMAGENET  # the backbone weights' mean/std/interpolation the model was trained with
    temperature: float = 1.0  # fitted on val by tlsweep.posthoc; probabilities are softmax(logits / temperature)
    raw: bool = False  # True: ignore the temperature (uncalibrated probabilities)
    members: list[dict] = field(default_factory=list)  # a post-hoc ensemble's members (label, weight, input)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.pre.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.pre.std

    @property
    def transform(self):
        return build_transform(self.image_size, pre=self.pre)

    def preprocess(self, images: Sequence[str | os.PathLike | Image.Image]) -> torch.Tensor:
        """Turn images into the normalized batch the model was validated on.

        Args:
            images: Image files or PIL images (any mode; converted to RGB as training does).

        Returns:
            A float tensor ``(N, 3, S, S)``.

        Raises:
            PredictError: An image cannot be read.
        """
        transform, max_side = self.transform, self.config.data.max_image_side
        return torch.stack([transform(_open(i, max_side)) for i in images])

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities (``softmax(logits / temperature)``), or raw ones with ``raw``."""
        logits = self.model(batch.to(self.device))
        return (logits if self.raw else logits / self.temperature).softmax(dim=1).cpu()

    def predict(self, images: Sequence[str | os.PathLike | Image.Image], top_k: int = 1,
                batch_size: int = 32) -> list[Prediction]:
        """Predict the class of each image.

        Args:
            images: Image files or PIL images.
            top_k: How many (label, probability) pairs each prediction lists (at most the number of classes).
            batch_size: Images per forward pass.

        Returns:
            One ``Prediction`` per image, in order.

        Raises:
            PredictError: An image cannot be read.
        """
        k = max(1, min(top_k, len(self.classes)))
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            probs, idx = self.probabilities(self.preprocess(chunk)).topk(k, dim=1)
            for image, p, i in zip(chunk, probs.tolist(), idx.tolist()):
                ranked = [(self.classes[c], float(q)) for c, q in zip(i, p)]
                name = str(image) if not isinstance(image, Image.Image) else getattr(image, "filename", "")
                out.append(Prediction(name, ranked[0][0], ranked[0][1], ranked))
        return out


def _open(image, max_side: int | None = None) -> Image.Image:
    """RGB exactly as training decodes it (alpha on white, 16-bit scaled, large images downscaled)."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    try:
        return open_rgb(image, max_side)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PredictError(f"{image}: cannot read image ({err})") from None


def load_predictor(path: str | os.PathLike, model: str | None = None, device: str | None = "cpu",
                   raw: bool = False) -> Predictor:
    """Load the model of a checkpoint for prediction: a trial's, a soup or a post-hoc ensemble.

    Args:
        path: A ``checkpoint.pt``, a checkpoint folder, a trial folder (its best checkpoint) or a sweep's results
            folder (the best trial overall), local or a URI.
        model: With a results folder, a model label: that model's best checkpoint.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        raw: Probabilities without the checkpoint's fitted temperature.

    Returns:
        A ``Predictor`` holding the model in eval mode with its classes and preprocessing.

    Raises:
        CheckpointError: ``path`` designates no checkpoint.
        PredictError: The checkpoint cannot be loaded or was written by an incompatible tlsweep.
    """
    from ..report.evaluate import rebuild_model

    resolved = resolve_checkpoint(path, model)
    try:
        state = load_checkpoint(resolved.path)
        if is_ensemble_checkpoint(state):
            return _ensemble_predictor(state, resolved, device, raw)
        config, classes = TrialConfig.from_dict(state["config"]), list(state["classes"])
    except (KeyError, TypeError) as err:
        raise PredictError(f"{resolved.path}: not a tlsweep checkpoint (missing {err})") from None
    except ConfigError as err:
        raise PredictError(f"{resolved.path}: checkpoint written by an incompatible tlsweep ({err}); use the "
                           f"tlsweep version that trained it") from None
    except Exception as err:  # noqa: BLE001 - torch.load raises many kinds
        raise PredictError(load_error(resolved.path, err)) from None
    dev = resolve_device(device)
    net = rebuild_model(state).to(dev)
    return Predictor(net, classes, config.data.image_size, config.model_label, resolved, config, dev,
                     preprocessing(config.model, config.preprocess), float(state.get("temperature", 1.0)), raw)


def _ensemble_predictor(state: dict, resolved: Resolved, device: str | None, raw: bool) -> Predictor:
    """A post-hoc ensemble: its module takes 0–1 pixels at the largest member size and normalises (and resizes)
    for each member itself, so the shared transform only resizes (the first member's resize policy)."""
    from dataclasses import replace

    from ..posthoc.ensemble_checkpoint import build_ensemble_model

    dev = resolve_device(device)
    net, pres = build_ensemble_model(state)
    configs = [TrialConfig.from_dict(m["config"]) for m in state["members"]]
    members = [{"model_label": c.model_label, "weight": w, "image_size": c.data.image_size, "mean": list(p.mean),
                "std": list(p.std)} for c, w, p in zip(configs, state["weights"], pres)]
    pixels = replace(pres[0], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    label = "post-hoc ensemble of " + ", ".join(c.model_label for c in configs)
    return Predictor(net.to(dev), list(state["classes"]), net.input_size, label, resolved, configs[0], dev, pixels,
                     float(state.get("temperature", 1.0)), raw, members)


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand paths into image files.

    Args:
        paths: Files (kept as given) and folders (searched recursively).

    Returns:
        The files, those found in folders sorted.
    """
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise PredictError(f"{p}: no such image file or folder")
    if not found:
        raise PredictError("no image files found (extensions: " + ", ".join(IMG_EXTENSIONS) + ")")
    return found


def write_csv(predictions: Sequence[Prediction], out: str | os.PathLike) -> Path:
    """Write predictions as CSV: path, predicted, probability, top_k (``label:prob`` joined by ``;``).

    Args:
        predictions: What ``Predictor.predict`` returned.
        out: The CSV file (its folder is created).

    Returns:
        ``out``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "predicted", "probability", "top_k"])
        for p in predictions:
            writer.writerow([p.path, p.label, f"{p.probability:.6f}",
                             ";".join(f"{label}:{prob:.6f}" for label, prob in p.top_k)])
    return out
