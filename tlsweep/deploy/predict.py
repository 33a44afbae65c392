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

from ..results.checkpoints import CheckpointError, Resolved, load_error, resolve_checkpoint
from ..data.images import open_rgb, to_rgb
from ..config.plan import ConfigError, TrialConfig
from ..data.transforms import build_transform
from ..models import IMAGENET, Preprocessing, preprocessing
from ..trial.loop import load_checkpoint, resolve_device


class PredictError(CheckpointError):
    """Images or checkpoint unusable for prediction."""


@dataclass
class Prediction:
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
        """Files or PIL images → the normalized batch the model was validated on."""
        transform, max_side = self.transform, self.config.data.max_image_side
        return torch.stack([transform(_open(i, max_side)) for i in images])

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).softmax(dim=1).cpu()

    def predict(self, images: Sequence[str | os.PathLike | Image.Image], top_k: int = 1,
                batch_size: int = 32) -> list[Prediction]:
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


def load_predictor(path: str | os.PathLike, model: str | None = None, device: str | None = "cpu") -> Predictor:
    """Predictor of the checkpoint that ``path`` designates (file, checkpoint/trial/sweep folder)."""
    from ..report.evaluate import rebuild_model

    resolved = resolve_checkpoint(path, model)
    try:
        state = load_checkpoint(resolved.path)
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
                     preprocessing(config.model, config.preprocess))


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and image files under folders (recursive, sorted)."""
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
    """Columns: path, predicted, probability, top_k (``label:prob`` joined by ``;``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "predicted", "probability", "top_k"])
        for p in predictions:
            writer.writerow([p.path, p.label, f"{p.probability:.6f}",
                             ";".join(f"{label}:{prob:.6f}" for label, prob in p.top_k)])
    return out
