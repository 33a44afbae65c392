"""A post-hoc ensemble checkpoint and its module: members picked by ``selection`` with their weights, each with
its own preprocessing (input size, normalisation). The module takes 0–1 RGB pixels at the largest member size,
resizes (bilinear, antialiased) and normalises for each member, and returns the log of the weighted mean of the
members' probabilities, so ``softmax`` of its output is the ensemble's probability."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

KIND = "posthoc_ensemble"  # the checkpoint's ``kind``; trial and soup checkpoints have none


def is_ensemble_checkpoint(state: dict) -> bool:
    return isinstance(state, dict) and state.get("kind") == KIND


class PosthocEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], sizes: Sequence[int],
                 means: Sequence[Sequence[float]], stds: Sequence[Sequence[float]]):
        super().__init__()
        if not members or len({len(members), len(weights), len(sizes), len(means), len(stds)}) != 1:
            raise ValueError("an ensemble needs members, and one weight, size, mean and std per member")
        self.members = nn.ModuleList(members)
        self.sizes = [int(s) for s in sizes]
        self.input_size = max(self.sizes)
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]))
        self.register_buffer("means", torch.tensor([list(m) for m in means], dtype=torch.float32))
        self.register_buffer("stds", torch.tensor([list(s) for s in stds], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.zeros(())
        for i, member in enumerate(self.members):
            xi = x if self.sizes[i] == self.input_size else F.interpolate(
                x, size=(self.sizes[i], self.sizes[i]), mode="bilinear", align_corners=False, antialias=True)
            xi = (xi - self.means[i].view(1, 3, 1, 1)) / self.stds[i].view(1, 3, 1, 1)
            probs = probs + self.weights[i] * member(xi).softmax(dim=1)
        return probs.clamp_min(1e-12).log()


def ensemble_checkpoint(members: Sequence[dict], weights: Sequence[float], temperature: float = 1.0,
                        info: dict | None = None) -> dict:
    """The checkpoint dict (plain tensors and numbers, ``torch.load(weights_only=True)``): ``members`` are slim
    trial checkpoints (``model``, ``config``, ``classes``) in pick order."""
    classes = list(members[0]["classes"])
    if any(list(m["classes"]) != classes for m in members):
        raise ValueError("ensemble members were trained on different classes")
    total = float(sum(weights))
    return {"kind": KIND, "classes": classes, "weights": [float(w) / total for w in weights],
            "members": [{"model": m["model"], "config": m["config"], "classes": classes} for m in members],
            "config": members[0]["config"], "temperature": float(temperature), "posthoc": info or {}}


def build_ensemble_model(state: dict) -> tuple[PosthocEnsemble, list]:
    """The module of an ensemble checkpoint (eval mode) and its members' ``Preprocessing``."""
    from ..config.plan import TrialConfig
    from ..models import preprocessing
    from ..report.evaluate import rebuild_model

    nets, pres, sizes = [], [], []
    for member in state["members"]:
        config = TrialConfig.from_dict(member["config"])
        nets.append(rebuild_model(member))
        pres.append(preprocessing(config.model, config.preprocess))
        sizes.append(config.data.image_size)
    model = PosthocEnsemble(nets, state["weights"], sizes, [p.mean for p in pres], [p.std for p in pres])
    return model.eval(), pres
