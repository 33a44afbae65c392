"""Sweep report: leaderboard picked on validation and evaluated once on test, plots, Grad-CAM, HTML."""

from __future__ import annotations

from .build import make_report
from .collect import ReportError, collect

__all__ = ["ReportError", "collect", "make_report"]
