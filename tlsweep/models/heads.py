"""Classifier heads: linear, or an MLP with hidden sizes, dropout and normalization."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

NORMS = {"none": None, "layernorm": nn.LayerNorm, "batchnorm": nn.BatchNorm1d}


def build_head(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (),
    dropout: float | Sequence[float] = 0.0,
    norm: str = "none",
    activation: str = "relu",
) -> nn.Module:
    """``hidden=()`` gives Dropout→Linear; otherwise [Norm]→(Dropout→Linear→Act)* →Dropout→Linear.

    ``dropout`` is one rate for every layer or one per layer (len(hidden) + 1).
    """
    hidden = list(hidden)
    rates = [float(dropout)] * (len(hidden) + 1) if isinstance(dropout, (int, float)) else [float(d) for d in dropout]
    if len(rates) != len(hidden) + 1:
        raise ValueError(f"head dropout needs {len(hidden) + 1} rates for hidden={hidden}, got {len(rates)}")
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
