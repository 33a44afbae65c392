"""Export a trained checkpoint to TorchScript and/or ONNX, with a JSON sidecar, and check each export against
the PyTorch model on a random batch.

The exported model has a fixed input size (the checkpoint's ``data.image_size``) and a dynamic batch axis:
input ``images`` (N, 3, S, S) float32 RGB, output ``logits`` (N, classes); softmax gives probabilities.
By default it takes *normalized* tensors (``(x - mean) / std`` of 0–1 pixels, mean/std in the sidecar);
with ``include_normalization=True`` it takes 0–1 pixels and normalizes inside.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..results.checkpoints import CheckpointError
from .predict import Predictor, load_predictor

FORMAT_FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_EXPORTERS = ("dynamo", "legacy")
SIDECAR = "model.json"


class ExportError(CheckpointError):
    """The export failed, or its outputs differ from the PyTorch model."""

    exit_code = 1


@dataclass
class Exported:
    format: str
    path: Path
    max_abs_diff: float


class Normalized(nn.Module):
    """``model`` behind ``(x - mean) / std``: takes 0–1 RGB pixels."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path, onnx_exporter: str) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.* is deprecated upstream but still supported
        traced = torch.jit.trace(model, example, check_trace=False)  # checked below on another batch size
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def _require_onnx() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'tlsweep[export]'")


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, onnx_exporter: str) -> Callable:
    import onnxruntime

    names = dict(input_names=["images"], output_names=["logits"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its deprecation
        if onnx_exporter == "dynamo":
            torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, **names,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, **names,
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x.numpy()})[0]


FORMATS: dict[str, Callable] = {"torchscript": _torchscript, "onnx": _onnx}


def export_predictor(predictor: Predictor, out_dir: str | os.PathLike, formats: Sequence[str] = ("torchscript",),
                     include_normalization: bool = False, onnx_exporter: str = "dynamo",
                     tolerance: float = 1e-3, seed: int = 0) -> list[Exported]:
    """Write ``model.pt``/``model.onnx`` and ``model.json`` into ``out_dir``; raise ``ExportError`` when an export
    fails or its max abs logit difference to PyTorch on a random batch exceeds ``tolerance``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or onnx_exporter not in ONNX_EXPORTERS:
        raise ExportError(f"unknown format {unknown or onnx_exporter!r}; formats: {', '.join(FORMATS)}; "
                          f"ONNX exporters: {', '.join(ONNX_EXPORTERS)}")
    if "onnx" in formats:
        _require_onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = predictor.model.cpu().eval()
    if include_normalization:
        model = Normalized(model, predictor.mean, predictor.std).eval()
    gen = torch.Generator().manual_seed(seed)
    size = predictor.image_size
    sample = (lambda n: torch.rand(n, 3, size, size, generator=gen)) if include_normalization else \
        (lambda n: torch.randn(n, 3, size, size, generator=gen))
    example, check = sample(2), sample(3)  # the check batch differs in size: the batch axis must be dynamic
    with torch.no_grad():
        expected = model(check).numpy()
    done = []
    for fmt in formats:
        path = out / FORMAT_FILES[fmt]
        try:
            run = FORMATS[fmt](model, example, path, onnx_exporter)
            got = run(check)
        except ExportError:
            raise
        except Exception as err:  # noqa: BLE001 - exporters raise many kinds; say which model and format failed
            detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            hint = (f"; try --onnx-exporter {'legacy' if onnx_exporter == 'dynamo' else 'dynamo'} or "
                    f"--format torchscript") if fmt == "onnx" else ""
            raise ExportError(f"{fmt} export of {predictor.model_label} failed: {type(err).__name__}: {detail}"
                              f"{hint}") from err
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not diff <= tolerance:
            raise ExportError(f"{fmt} export of {predictor.model_label}: outputs differ from PyTorch by "
                              f"{diff:.3g} (shape {got.shape} vs {expected.shape}; tolerance {tolerance:g})")
        done.append(Exported(fmt, path, diff))
    write_sidecar(predictor, out / SIDECAR, done, include_normalization)
    return done


def write_sidecar(predictor: Predictor, path: Path, exported: Sequence[Exported], include_normalization: bool) -> Path:
    size = predictor.image_size
    info = {
        "model_label": predictor.model_label,
        "classes": predictor.classes,
        "image_size": size,
        "input": {"name": "images", "shape": ["batch", 3, size, size], "dtype": "float32", "layout": "NCHW RGB",
                  "expects": "0-1 pixels" if include_normalization else "normalized: (pixels/255 - mean) / std"},
        "output": {"name": "logits", "shape": ["batch", len(predictor.classes)],
                   "note": "softmax(logits / temperature) gives calibrated probabilities" if not predictor.members
                   else "log of the members' weighted mean probability; softmax(logits / temperature) calibrates"},
        "temperature": predictor.temperature,
        "normalization_included": include_normalization,
        "mean": list(predictor.mean),
        "std": list(predictor.std),
        "resize": predictor.pre.describe(size),
        "files": {e.format: e.path.name for e in exported},
        "max_abs_diff": {e.format: e.max_abs_diff for e in exported},
        "checkpoint": str(predictor.checkpoint.path),
        "model": predictor.config.model.to_dict(),
        **({"ensemble_members": predictor.members} if predictor.members else {}),
        "tlsweep_version": _version(),
        "torch_version": torch.__version__,
    }
    path.write_text(json.dumps(info, indent=1))
    return path


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlsweep")
    except PackageNotFoundError:
        return None


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, formats: Sequence[str] = ("torchscript",),
                      model: str | None = None, **kwargs) -> list[Exported]:
    """Export a checkpoint to TorchScript and/or ONNX with a ``model.json`` sidecar, each checked against PyTorch.

    Args:
        checkpoint: A ``checkpoint.pt``, a checkpoint, trial or sweep results folder (as ``load_predictor``).
        out_dir: Folder for ``model.pt`` / ``model.onnx`` and ``model.json``.
        formats: ``torchscript`` and/or ``onnx`` (ONNX needs the ``export`` extra).
        model: With a results folder, a model label: that model's best checkpoint.
        **kwargs: ``include_normalization`` (the export takes 0–1 pixels), ``onnx_exporter`` (``dynamo`` or
            ``legacy``), ``tolerance`` (largest max abs logit difference accepted), ``seed``.

    Returns:
        One ``Exported`` per format: its path and its max abs difference to PyTorch.

    Raises:
        CheckpointError: ``checkpoint`` designates no checkpoint.
        ExportError: An export fails, or differs from PyTorch by more than ``tolerance``.
    """
    return export_predictor(load_predictor(checkpoint, model, device="cpu"), out_dir, formats, **kwargs)
