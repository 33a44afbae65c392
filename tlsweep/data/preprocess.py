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

MODES = ("weights", "squash")


def resolve_mode(data, model) -> str:
    """The model's ``preprocess``, else ``data.preprocess``, else ``weights`` for a pretrained model and
    ``squash`` for one from scratch (``data``/``model``: typed configs or their plain dicts)."""
    get = (lambda c, k: c.get(k)) if isinstance(model, dict) else (lambda c, k: getattr(c, k, None))
    mode = get(model, "preprocess") or (data.get("preprocess") if isinstance(data, dict) else
                                        getattr(data, "preprocess", None))
    if mode:
        return mode
    return "squash" if str(get(model, "weights") or "none").lower() == "none" else "weights"


def preprocess_for(config):
    """A trial's ``Preprocessing`` (``TrialConfig`` or its plain dict)."""
    from ..config import TrialConfig
    from ..models import preprocessing

    config = TrialConfig.from_dict(config)
    return preprocessing(config.model, config.preprocess)
