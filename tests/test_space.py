from ray.tune.search import Searcher

from tlsweep.config.sections import ModelConfig
from tlsweep.config.space import build_groups, total_trials
from tlsweep.config.spec import parse_spec
from tlsweep.sweep.searcher import GroupedSearcher


def plain(spec_dict, **changes):
    return parse_spec({**spec_dict, **changes}).plan()


def suggest_all(p, seed=0):
    groups = build_groups(p)
    searcher = GroupedSearcher(groups, p.num_samples, "val_acc", "max", p.searcher.type, seed)
    configs = []
    for i in range(total_trials(p) + 1):
        config = searcher.suggest(f"t{i}")
        if config is Searcher.FINISHED:
            break
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.5, "training_iteration": 1})
    return configs


def test_per_model_groups_give_each_model_its_budget(spec_dict):
    p = plain(spec_dict)
    assert len(build_groups(p)) == 3 and total_trials(p) == 6
    configs = suggest_all(p)
    assert len(configs) == 6
    assert sorted(c["model"] for c in configs) == sorted(list(p.models_table) * 2)
    for c in configs:
        assert 1e-3 <= c["lr"] <= 1e-2 and c["batch_size"] in (8, 16) and c["optimizer"] == "adam"


def test_same_seed_same_configs(spec_dict):
    p = plain(spec_dict)
    assert suggest_all(p, seed=3) == suggest_all(p, seed=3)
    assert suggest_all(p, seed=3) != suggest_all(p, seed=4)


def test_grid_values_are_crossed_with_models_and_samples(spec_dict):
    search = dict(spec_dict["search"], batch_size={"grid": [4, 8]}, lr={"grid": [1e-2, 1e-3]})
    p = plain(spec_dict, search=search, num_samples=1)
    configs = suggest_all(p)
    assert len(configs) == 3 * 2 * 2
    assert {(c["model"], c["batch_size"], c["lr"]) for c in configs} == {
        (m, b, lr) for m in p.models_table for b in (4, 8) for lr in (1e-2, 1e-3)}


def test_grid_searcher_enumerates_every_finite_choice(spec_dict):
    search = dict(spec_dict["search"], lr=1e-3)
    p = plain(spec_dict, search=search, searcher={"type": "grid"}, num_samples=None)
    assert total_trials(p) == 3 * 2 * 2  # models × batch_size × freeze_depth
    assert len({tuple(sorted(c.items())) for c in suggest_all(p)}) == 12


def test_shared_mode_samples_the_model(spec_dict):
    p = plain(spec_dict, searcher={"type": "random", "seed": 1, "per_model": False}, num_samples=8)
    assert len(build_groups(p)) == 1 and total_trials(p) == 8
    configs = suggest_all(p)
    assert {c["model"] for c in configs} <= set(p.models_table) and len({c["model"] for c in configs}) > 1


def test_trial_config_carries_model_and_data(spec_dict):
    p = plain(spec_dict)
    config = p.trial_config({"model": "resnet18", "lr": 1e-3})
    assert config.model == ModelConfig(name="resnet18", weights="none")
    assert config.model_label == "resnet18" and config.epochs == 3 and config.lr == 1e-3
    assert str(config.data.root) == spec_dict["data"]["root"]
