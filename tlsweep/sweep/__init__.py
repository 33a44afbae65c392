"""Sweep: search space → grouped Optuna searcher → Ray Tune trainable → runner."""
