"""Data: sources (where images come from and how they split), transforms, and a synthetic dataset maker.

Names load on first use (PEP 562), so ``tlsweep.data.augment`` (the spec's augment policies) imports no torch.
"""

from __future__ import annotations

import importlib

__all__ = ["SOURCES", "DataError", "Splits", "load_splits", "register_source"]


def __getattr__(name: str):
    if name in __all__:
        sources = importlib.import_module(".sources", __name__)
        importlib.import_module(".torchvision_sources", __name__)  # registers fashionmnist, mnist, cifar10
        return getattr(sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
