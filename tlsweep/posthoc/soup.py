"""Model soups (Wortsman et al., 2022): average the weights of checkpoints fine-tuned from the same pretrained
weights. The uniform soup averages every compatible ingredient; the greedy soup adds them in order of validation
accuracy and keeps each only if the soup's validation accuracy does not drop. BatchNorm statistics are recomputed
on training images after averaging (averaged running statistics do not describe the averaged network)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import TLSweepError

# what ingredients must share, read from a checkpoint's config: (name, getter)
SHARED = (
    ("backbone", lambda c: c["model"].get("name") or "+".join(c["model"].get("ensemble") or ())),
    ("fusion", lambda c: c["model"].get("fusion")),
    ("pretrained weights", lambda c: c["model"].get("weights", "none")),
    ("head architecture", lambda c: c["model"].get("head")),
    ("image size", lambda c: c["data"].get("image_size")),
    ("preprocessing", lambda c: c.get("preprocess")),
)


class SoupError(TLSweepError, ValueError):
    """Ingredients that cannot be averaged."""


def incompatibility(reference: dict, state: dict) -> str | None:
    """Why checkpoint ``state`` cannot join a soup whose first ingredient is ``reference`` (None if it can): a
    different backbone, pretrained weights, head architecture, image size, preprocessing, classes, or tensors."""
    for name, get in SHARED:
        a, b = get(reference["config"]), get(state["config"])
        if a != b:
            return f"{name} differs: {b!r} vs {a!r}"
    if list(reference["classes"]) != list(state["classes"]):
        return "classes differ"
    ref, other = reference["model"], state["model"]
    if ref.keys() != other.keys():
        missing = sorted(set(ref) ^ set(other))[:3]
        return f"architecture differs: parameters {', '.join(missing)} are not in both"
    for k, v in ref.items():
        if v.shape != other[k].shape:
            return f"architecture differs: {k} has shape {tuple(other[k].shape)} vs {tuple(v.shape)}"
    return None


def average_states(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None) -> dict:
    """The (weighted) mean of state dicts; integer buffers (BatchNorm's batch counters) are taken from the first."""
    if not states:
        raise SoupError("nothing to average")
    weights = [1.0 / len(states)] * len(states) if weights is None else [float(w) for w in weights]
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = sum(w * s[k].to(torch.float64) for w, s in zip(weights, states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) from ``batches``;
    returns the images seen. The model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    nn.Module.train(model, True)  # all BatchNorms, also those of stages frozen while fine-tuning
    seen = 0
    for x in batches:
        model(x)
        seen += len(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return seen


@dataclass
class Soup:
    kind: str  # greedy or uniform
    ingredients: list[int]  # indices of the accepted candidates
    state: dict  # averaged (and BatchNorm-recomputed) state dict
    val_acc: float
    tried: int
    refused: dict[int, str] = field(default_factory=dict)  # candidate → why it could not join
    trace: list[tuple[int, float, bool]] = field(default_factory=list)  # (candidate, soup val acc with it, kept)

    @property
    def accepted(self) -> int:
        return len(self.ingredients)


Cook = Callable[[dict], tuple[dict, float]]  # averaged state → (state after BatchNorm recompute, val accuracy)


def compatible(candidates: Sequence[dict]) -> tuple[list[int], dict[int, str]]:
    """Indices of candidates that can be averaged with the first, and the reasons the others cannot."""
    ok, refused = [0], {}
    for i, state in enumerate(candidates[1:], start=1):
        why = incompatibility(candidates[0], state)
        if why is None:
            ok.append(i)
        else:
            refused[i] = why
    return ok, refused


def greedy_soup(candidates: Sequence[dict], val_accs: Sequence[float], cook: Cook) -> Soup:
    """``candidates``: checkpoint dicts (``model``, ``config``, ``classes``), best validation accuracy first, with
    their own ``val_accs``. Start from the first as it is; add each compatible one if the soup's validation
    accuracy does not drop. The soup is never below its first ingredient on validation."""
    ok, refused = compatible(candidates)
    chosen, state, best = [0], candidates[0]["model"], float(val_accs[0])
    trace = [(0, best, True)]
    for i in ok[1:]:
        trial_state, acc = cook(average_states([candidates[j]["model"] for j in chosen + [i]]))
        keep = acc >= best
        trace.append((i, acc, keep))
        if keep:
            chosen, state, best = chosen + [i], trial_state, acc
    return Soup("greedy", chosen, state, best, len(ok), refused, trace)


def uniform_soup(candidates: Sequence[dict], cook: Cook) -> Soup:
    """Every compatible candidate averaged with equal weights (the reference soup)."""
    ok, refused = compatible(candidates)
    state, acc = cook(average_states([candidates[i]["model"] for i in ok]))
    return Soup("uniform", ok, state, acc, len(ok), refused)
