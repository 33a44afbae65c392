"""A torchvision backbone with its classifier swapped for a new head, and freeze depth applied by stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .backbones import Backbone, get_backbone, parse_weights
from .heads import build_head

if TYPE_CHECKING:
    from ..config.sections import HeadConfig


def resolve_path(root: nn.Module, path: str):
    """The module or parameter at a dotted path."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(root: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(resolve_path(root, parent) if parent else root, leaf, value)


def stage_members(root: nn.Module, stage: str) -> list[nn.Module | nn.Parameter]:
    """Modules/parameters named by a stage string (see ``Backbone``)."""
    members = []
    for part in stage.split("+"):
        if "-" not in part:
            members.append(resolve_path(root, part))
            continue
        first, last = part.split("-")
        parent_path, _, first_leaf = first.rpartition(".")
        parent = resolve_path(root, parent_path) if parent_path else root
        names = [n for n, _ in parent.named_children()]
        lo, hi = names.index(first_leaf), names.index(last)
        members.extend(getattr(parent, n) for n in names[lo: hi + 1])
    return members


def frozen_stage_count(freeze_depth: float | str, num_stages: int) -> int:
    """0 = fine-tune everything, 1 (or ``all``) = linear probe; a fraction freezes that share of stages,
    a whole number >= 2 that many stages."""
    if freeze_depth == "all":
        return num_stages
    if freeze_depth == "none":
        return 0
    depth = float(freeze_depth)
    if depth >= 2 and depth == int(depth):  # a whole number of stages
        if depth > num_stages:
            raise ValueError(f"freeze_depth {int(depth)} exceeds the backbone's {num_stages} stages")
        return int(depth)
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"freeze_depth must be within [0, 1], a whole number of stages >= 2, or 'all'/'none', "
                         f"got {freeze_depth!r}")
    return round(depth * num_stages)


def load_backbone(entry: Backbone, weights: str | None) -> nn.Module:
    """Build the torchvision model: ``imagenet`` (torchvision's DEFAULT weights), ``none``, a weights-enum
    member name such as ``IMAGENET1K_V2``, or a path to a state dict saved from the same architecture."""
    ref = parse_weights(weights)
    ctor = entry.constructor()
    if ref.kind == "none":
        return ctor(weights=None, **entry.builder_kwargs)
    if ref.kind == "file":
        model = ctor(weights=None, **entry.builder_kwargs)
        state = torch.load(ref.value, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        return model
    model = ctor(weights=entry.weights(ref.value), **entry.pretrained_kwargs)
    return entry.after_pretrained(model) if entry.after_pretrained else model


class TransferModel(nn.Module):
    """``backbone`` returns pooled features (its classifier is an Identity); ``head`` maps them to classes."""

    def __init__(self, entry: Backbone, backbone: nn.Module, head: nn.Module, feature_dim: int):
        super().__init__()
        self.entry = entry
        self.backbone = backbone
        self.head = head
        self.feature_dim = feature_dim
        self.frozen_stages = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def stages(self) -> list[list[nn.Module | nn.Parameter]]:
        return [stage_members(self.backbone, s) for s in self.entry.stages]

    def freeze(self, freeze_depth: float | str) -> int:
        """Freeze the first stages; returns how many are frozen. Frozen stages keep BatchNorm in eval mode."""
        return self.set_frozen(frozen_stage_count(freeze_depth, self.entry.num_stages))

    def set_frozen(self, count: int) -> int:
        """Freeze exactly the first ``count`` stages; backbone parameters outside the stages (e.g. ResNet's stem
        BatchNorm) freeze with the first stage."""
        self.frozen_stages = int(count)
        self.backbone.requires_grad_(self.frozen_stages == 0)
        for stage in self.stages()[self.frozen_stages:]:
            for member in stage:
                member.requires_grad_(True)
        self.train(self.training)
        return self.frozen_stages

    @property
    def fully_frozen(self) -> bool:
        return self.frozen_stages == self.entry.num_stages

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_stages:
            if self.fully_frozen:
                self.backbone.eval()
            else:
                for stage in self.stages()[: self.frozen_stages]:
                    for member in stage:
                        if isinstance(member, nn.Module):
                            member.eval()
                for m in self.backbone.modules():  # BatchNorm outside the stages, frozen with the first one
                    params = list(m.parameters(recurse=False))
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not params[0].requires_grad:
                        m.eval()
        return self


def _torchvision_backbone(entry: Backbone, weights: str | None) -> tuple[nn.Module, int]:
    backbone = load_backbone(entry, weights)
    feature_dim = resolve_path(backbone, entry.head).in_features
    _set_path(backbone, entry.head, nn.Identity())
    return backbone, feature_dim


def _timm_backbone(entry: Backbone, weights: str | None) -> tuple[nn.Module, int]:
    from . import timm_models

    backbone = timm_models.load(entry, weights)  # already without classifier (reset_classifier(0))
    return backbone, timm_models.feature_dim(backbone)


# Backbone.source → (entry, weights) → (backbone returning pooled features, their size)
BUILDERS = {"torchvision": _torchvision_backbone, "timm": _timm_backbone}


def build_backbone_model(
    name: str, num_classes: int, weights: str | None = "none", head=None,
    freeze_depth: float | str = 0.0,
) -> TransferModel:
    entry = get_backbone(name)
    backbone, feature_dim = BUILDERS[entry.source](entry, weights)
    model = TransferModel(entry, backbone, build_head(feature_dim, num_classes, **_head_kwargs(head)), feature_dim)
    model.freeze(freeze_depth)
    return model


def _head_kwargs(head: HeadConfig | None) -> dict:
    """A head config as ``build_head`` keyword arguments."""
    return {} if head is None else head.model_dump()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
