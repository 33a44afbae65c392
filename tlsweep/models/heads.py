"""Classifier heads: linear, or an MLP with hidden sizes, dropout and normalization."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

NORMS = {"none": None, "layernorm": nn.LayerNorm, "batchnorm": nn.BatchNorm1d}


def dropout_problem(hidden: Sequence[int], rates: Sequence[float]) -> str | None:
    """Why a per-layer dropout list does not fit ``hidden`` (None if it does)."""
    n = len(hidden)
    if len(rates) not in (n, n + 1) or not rates:
        return (f"head dropout takes one rate, or one per layer: {n + 1} (before each of the {n} hidden layers and "
                f"before the output layer) or {n} (none before the output layer) for hidden={list(hidden)}; "
                f"got {len(rates)}")
    bad = [r for r in rates if not 0 <= r < 1]
    return f"head dropout rates must be within [0, 1), got {bad}" if bad else None


def build_head(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (),
    dropout: float | Sequence[float] = 0.0,
    norm: str = "none",
    activation: str = "relu",
) -> nn.Module:
    """``hidden=()`` gives Dropout→Linear; otherwise [Norm]→(Dropout→Linear→Act)* →Dropout→Linear.

    ``dropout`` is one rate for every layer, or one per layer: len(hidden) + 1 rates, or len(hidden) rates
    (no dropout before the output layer).
    """
    hidden = list(hidden)
    rates = [float(dropout)] * (len(hidden) + 1) if isinstance(dropout, (int, float)) else [float(d) for d in dropout]
    message = dropout_problem(hidden, rates)
    if message:
        raise ValueError(message)
    rates += [0.0] * (len(hidden) + 1 - len(rates))
    if norm not in NORMS:
        raise ValueError(f"unknown head norm {norm!r}; allowed: {', '.join(NORMS)}")
    act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    if NORMS[norm] is not None:
        layers.append(NORMS[norm](in_features))
    width = in_features
    for size, rate in zip(hidden, rates):
        if rate:
            layers.append(nn.Dropout(rate))
        layers += [nn.Linear(width, size), act()]
        width = size
    if rates[-1]:
        layers.append(nn.Dropout(rates[-1]))
    layers.append(nn.Linear(width, num_classes))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def head_modules(model: nn.Module) -> list[nn.Module]:
    """What a transfer model trains from scratch: its head (a two-backbone ensemble: members' heads, projections
    and combiner)."""
    if hasattr(model, "members"):
        return [m.head for m in model.members] + [getattr(model, n) for n in ("projections", "combiner")
                                                  if hasattr(model, n)]
    return [model.head]


def head_seed(config) -> int | None:
    """The seed of a trial's head initialisation (``posthoc.head_init``): ``shared`` gives every trial of a model
    the same one (soups average better from one start), ``per_trial`` one drawn from the trial's values,
    ``default`` none (the head takes whatever the global RNG gives after the sweep seed)."""
    import json
    import zlib

    if config.head_init == "shared":
        return zlib.crc32(f"{config.seed}:{config.model_label}".encode())
    if config.head_init == "per_trial":
        values = json.dumps([config.seed, config.model_label, config.hyperparameters()], sort_keys=True, default=str)
        return zlib.crc32(values.encode())
    return None


def reseed_head(model: nn.Module, seed: int | None) -> nn.Module:
    """Re-initialise the head's layers from ``seed`` (the global RNG is left as it was); None: unchanged."""
    if seed is None:
        return model
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for head in head_modules(model):
            for m in head.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return model
