"""Models: the backbone registry, heads, ensembles. ``build_model`` turns a plain model config into a module."""

from __future__ import annotations

from .registry import Backbone, get_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "build_model", "get_backbone", "list_backbones", "register_backbone"]


def build_model(model: dict, num_classes: int, freeze_depth: float | str = 0.0):
    """``model`` is ``{"name": ...}`` for one backbone or ``{"ensemble": [a, b], "fusion": ...}``;
    both take optional ``weights`` and ``head``."""
    if "ensemble" in model:
        from .ensemble import build_ensemble

        return build_ensemble(list(model["ensemble"]), model.get("fusion", "logits"), num_classes,
                              model.get("weights", "none"), model.get("head"), freeze_depth)
    from .transfer import build_backbone_model

    return build_backbone_model(model["name"], num_classes, model.get("weights", "none"), model.get("head"),
                                freeze_depth)
