"""How an image becomes a model input: ``data.preprocess: weights | squash``.

``squash`` resizes every image to S×S. ``weights`` follows the weights' evaluation transform (torchvision
``weights.transforms()``, timm ``pretrained_cfg``): resize the shorter side, then centre-crop S×S, keeping their
resize/crop ratio (e.g. 232 → 224 for torchvision's V2 weights, 1/crop_pct for timm) at the sweep's
``image_size`` S. Both use the weights' mean/std and interpolation (``Backbone.preprocessing``). Unset, a pretrained
backbone gets ``weights`` and one trained from scratch ``squash``; a model's own ``preprocess`` overrides
``data.preprocess``; an ensemble uses its first member's. The sweep resolves the mode into each
``TrialConfig.preprocess`` (``squash`` in checkpoints written before this existed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.plan import TrialConfig
    from ..models.backbones import Preprocessing


def preprocess_for(config: TrialConfig) -> Preprocessing:
    """A trial's input normalisation and resize/crop (its model's weights' own, in its resolved mode)."""
    from ..models import preprocessing

    return preprocessing(config.model, config.preprocess)
