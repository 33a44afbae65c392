"""Data: sources (where images come from and how they split), transforms, and a synthetic dataset maker."""

from .sources import SOURCES, Splits, load_splits, register_source

__all__ = ["SOURCES", "Splits", "load_splits", "register_source"]
