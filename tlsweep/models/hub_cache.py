"""Where pretrained weights files live (torch's hub cache) and the error for a missing or wrong one."""

from __future__ import annotations

from pathlib import Path

from ..errors import TLSweepError


class WeightsError(TLSweepError, ValueError):
    """A weights file is wrong or missing; the message says what to do."""


def checkpoints_dir() -> Path:
    """Where torchvision looks for (and downloads) weight files: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"
