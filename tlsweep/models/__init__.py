"""Models: the backbone registry, heads, ensembles. ``build_model`` turns a model config into a module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import timm_models  # noqa: F401 (registers the timm/ backbone source; imports timm only when used)
from .backbones import (
    IMAGENET,
    Backbone,
    Preprocessing,
    get_backbone,
    list_backbones,
    register_backbone,
)

if TYPE_CHECKING:
    from ..config.sections import ModelConfig

__all__ = ["IMAGENET", "Backbone", "Preprocessing", "build_model", "get_backbone", "list_backbones", "preprocessing",
           "register_backbone"]


def build_model(model: ModelConfig, num_classes: int, freeze_depth: float | str = 0.0):
    """The network of a model config: one backbone (``name``) or an ``ensemble`` of two with a ``fusion``; both
    with ``weights`` and an optional ``head``, frozen to ``freeze_depth``."""
    if model.ensemble is not None:
        from .ensemble import build_ensemble

        return build_ensemble(list(model.ensemble), model.fusion, num_classes, model.weights, model.head,
                              freeze_depth)
    from .transfer import build_backbone_model

    return build_backbone_model(model.name, num_classes, model.weights, model.head, freeze_depth)


def preprocessing(model: ModelConfig, mode: str = "squash") -> Preprocessing:
    """The normalization a model's inputs get: its (first) backbone's weights' own (``Backbone.preprocessing``);
    ``mode`` ``weights`` adds their resize/centre-crop ratio (``data.preprocess``, see tlsweep.data.preprocess)."""
    from dataclasses import replace

    entry = get_backbone(model.backbones[0])
    pre = entry.preprocessing(model.weights)
    return replace(pre, resize_ratio=entry.resize_ratio(model.weights)) if mode == "weights" else pre
