"""Two-backbone ensembles, as in the seed projects: logit concatenation, feature fusion, probability mean."""

from __future__ import annotations

import torch
from torch import nn

from ..config.sections import FEATURE_HEAD, HeadConfig
from .heads import build_head
from .transfer import TransferModel, _head_kwargs, build_backbone_model

FUSIONS = ("logits", "features", "mean")


class Ensemble(nn.Module):
    """``logits``: both members' logits concatenated → Linear. ``features``: pooled features projected to
    ``proj_dim`` each, concatenated → LayerNorm/Dropout MLP. ``mean``: log of the mean of both softmaxes
    (log-probabilities, so cross-entropy on them is the NLL of the averaged prediction)."""

    def __init__(self, members: list[TransferModel], fusion: str, num_classes: int, head=None,
                 proj_dim: int = 1024):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; allowed: {', '.join(FUSIONS)}")
        self.members = nn.ModuleList(members)
        self.fusion = fusion
        if fusion == "logits":
            self.combiner = nn.Linear(num_classes * len(members), num_classes)
        elif fusion == "features":
            for m in members:  # members only supply pooled features
                m.head = nn.Identity()
            self.projections = nn.ModuleList(nn.Linear(m.feature_dim, proj_dim) for m in members)
            self.combiner = build_head(proj_dim * len(members), num_classes, **_head_kwargs(
                head if head not in (None, HeadConfig()) else FEATURE_HEAD))
        self.feature_dim = proj_dim * len(members) if fusion == "features" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse([m.features(x) for m in self.members])

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits from the members' pooled backbone features (everything after the backbones)."""
        if self.fusion == "features":
            return self.combiner(torch.cat([p(f) for p, f in zip(self.projections, features)], dim=1))
        logits = [m.head(f) for m, f in zip(self.members, features)]
        if self.fusion == "logits":
            return self.combiner(torch.cat(logits, dim=1))
        probs = torch.stack([z.softmax(dim=1) for z in logits]).mean(dim=0)
        return probs.clamp_min(1e-12).log()

    def freeze(self, freeze_depth) -> int:
        return min(m.freeze(freeze_depth) for m in self.members)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.members:
            m.train(mode)
        return self


def build_ensemble(names: list[str], fusion: str, num_classes: int, weights: str | None = "none",
                   head=None, freeze_depth: float | str = 0.0) -> Ensemble:
    member_head = None if fusion == "features" else head
    members = [build_backbone_model(n, num_classes, weights, member_head, freeze_depth) for n in names]
    return Ensemble(members, fusion, num_classes, head if fusion == "features" else None)
