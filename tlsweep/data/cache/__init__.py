"""Node-local caches shared by every trial on a machine: decoded images and frozen-backbone features.

``trial_data`` decides, for one trial, which datasets its loaders read (see ``pipeline``).
"""

from .pipeline import TrialData, trial_data
from .store import cache_root, content_key

__all__ = ["TrialData", "cache_root", "content_key", "trial_data"]
