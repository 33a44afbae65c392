"""After the sweep, from its own checkpoints: model soups (``soup``), post-hoc ensemble selection (``selection``,
``ensemble``) and temperature scaling (``calibration``); ``build.build_posthoc`` runs them on a results folder.
Import the submodules (this package imports nothing, so ``predict`` stays light)."""
