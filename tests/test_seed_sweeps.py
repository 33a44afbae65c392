"""Every sweep file in sweeps/ validates and every model it names (with every searched head) builds offline."""
from pathlib import Path

import pytest
import torch

from tlsweep.config.distributions import candidate_values
from tlsweep.config.spec import load_spec
from tlsweep.models import build_model, get_backbone

SWEEPS = sorted((Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml"))
SEEDS = ["vehicles_all_models", "vehicles_ensembles", "cifar10_frozen", "drones_mobilenet_v2",
         "cats_dogs_resnet50"]


def test_seed_sweep_files_exist_and_are_documented():
    by_name = {p.stem: p for p in SWEEPS}
    assert set(SEEDS) <= set(by_name)
    for name in SEEDS:
        comments = "\n".join(line for line in by_name[name].read_text().splitlines() if line.startswith("#"))
        assert "Dataset layout" in comments and "seed" in comments.lower(), name


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_validates_and_models_build(path):
    torch.set_num_threads(1)
    plan = load_spec(path).plan()
    heads = candidate_values(load_spec(path).search.head)
    for label, cfg in plan.models_table.items():
        for head in heads:
            model_cfg = plan.trial_config({"model": label, "head": head}).model
            model = build_model(model_cfg.replace(weights="none"), 3, "all").eval()
            names = cfg.backbones
            size = 224 if any(get_backbone(n).fixed_input_size for n in names) else 64
            with torch.no_grad():
                out = model(torch.zeros(1, 3, size, size))
            assert out.shape == (1, 3), (label, head)


def test_seed_parameters_are_kept():
    specs = {p.stem: load_spec(p) for p in SWEEPS if p.stem in SEEDS}
    vehicles = specs["vehicles_all_models"]
    assert len(vehicles.models) == 10 and vehicles.epochs == 20
    assert (vehicles.search.optimizer, vehicles.search.plateau_factor, vehicles.search.plateau_patience) == (
        "adam", 0.2, 10)
    assert vehicles.search.lr.bounds()[0] < 0.05 <= vehicles.search.lr.bounds()[1]
    ens = specs["vehicles_ensembles"]
    assert {m.fusion for m in ens.models} == {"logits", "features"}
    assert ens.search.batch_size.values() == [4, 8] and ens.search.lr.values() == [1e-2, 1e-3]
    cifar = specs["cifar10_frozen"]
    assert cifar.data.source == "cifar10" and cifar.data.val_fraction == 0.2 and cifar.data.image_size == 224
    assert cifar.model_labels() == ["vgg16", "mobilenet_v2", "mobilenet_v3_large"]
    assert cifar.search.freeze_depth == "all"
    drones = specs["drones_mobilenet_v2"]
    assert [next(iter(op)) for op in drones.data.augment] == [
        "ColorJitter", "ColorJitter", "RandomAffine", "ElasticTransform", "RandomRot90"]
    assert drones.data.image_size_schedule[0].size < drones.data.image_size == 224
    assert drones.search.freeze_depth == "all" and drones.model_labels() == ["mobilenet_v2"]
    cats = specs["cats_dogs_resnet50"]
    assert cats.heads["seed"].hidden == (1024, 256) and cats.heads["seed"].dropout == (0.5, 0.3)
