"""Data: sources (where images come from and how they split), transforms, and a synthetic dataset maker."""

from .sources import SOURCES, DataError, Splits, load_splits, register_source
from . import torchvision_sources  # noqa: F401,E402 - registers fashionmnist, mnist, cifar10

__all__ = ["SOURCES", "DataError", "Splits", "load_splits", "register_source"]
