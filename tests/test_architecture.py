"""The package's shape: no import cycles, a Ray-free report, registries that the spec reads, typed configs
that round-trip through JSON, registry fields that work, a light public API."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

import tlsweep
from tlsweep.config import plan as C
from tlsweep.config.search import SearchSpace
from tlsweep.config.spec import SpecError, parse_spec

PACKAGE = Path(tlsweep.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → tlsweep modules it imports anywhere (module level and inside functions), relative imports
    resolved; ``if TYPE_CHECKING:`` blocks left out."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and
                isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph["tlsweep.trial.loop"] >= {"tlsweep.config.plan", "tlsweep.trial.optim"}  # the walk sees real edges
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_module_names_are_unique():
    """One name, one module: no two files of the package share a name (``__init__`` aside)."""
    names = [p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The layers (CONTRIBUTING.md): config → data, models → trial → sweep → cli, with results, report and deploy
# beside sweep. Only sweep/ and the CLI know Ray; config reads other layers' registries only (option names).
RAY_FREE = ("tlsweep.config", "tlsweep.trial", "tlsweep.data", "tlsweep.models", "tlsweep.results",
            "tlsweep.report", "tlsweep.deploy", "tlsweep.errors")
REGISTRY_READS = {("tlsweep.config.sections", "tlsweep.sweep.schedulers")}  # scheduler names, checked lazily


def test_only_sweep_and_the_cli_know_ray_and_the_sweep_layer():
    graph = import_graph()
    for module, edges in graph.items():
        if module.startswith(RAY_FREE):
            assert not [e for e in edges if e.startswith("tlsweep.sweep") and (module, e) not in REGISTRY_READS], module
    for path in PACKAGE.rglob("*.py"):
        if _module_name(path).startswith(RAY_FREE):
            tree = ast.parse(path.read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level]
            assert not [n for n in names if n == "ray" or n.startswith("ray.")], path


def test_trial_loop_data_and_models_never_import_the_sweep_file_models():
    """The interior reads the typed plan and trial config, never the sweep file (``config.spec``)."""
    graph = import_graph()
    for module, edges in graph.items():
        if module.startswith(("tlsweep.trial", "tlsweep.data", "tlsweep.models", "tlsweep.report",
                              "tlsweep.deploy", "tlsweep.results")):
            assert "tlsweep.config.spec" not in edges, module


def test_private_ray_attributes_are_read_in_one_module():
    readers = [p.name for p in PACKAGE.rglob("*.py") if any(a in p.read_text() for a in
               ("._experiment_analysis", "._brackets", "._rungs", "._num_stopped"))]
    assert readers == ["ray_internals.py"]


def test_import_tlsweep_is_light_and_lists_its_api(procs):
    code = ("import sys, tlsweep; assert tlsweep.__version__; "
            "print(sorted(m for m in ('torch', 'ray', 'pandas', 'torchvision') if m in sys.modules))")
    out = procs.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in ("load_spec", "parse_spec", "Spec", "SpecError", "run_sweep", "SweepResult", "make_report", "Trial",
                 "fit", "TrialConfig", "SweepPlan", "load_predictor", "export_checkpoint", "list_backbones"):
        assert name in tlsweep.__all__
    assert tlsweep.TrialConfig is C.TrialConfig and tlsweep.list_backbones()[0]
    with pytest.raises(AttributeError):
        tlsweep.no_such_name  # noqa: B018


def test_a_registered_optimizer_and_lr_scheduler_are_accepted_by_the_spec(spec_dict):
    from tlsweep.trial.optim import LR_SCHEDULERS, OPTIMIZERS, LRScheduler

    spec_dict["search"].update(optimizer="fake_opt", lr_scheduler="fake_sched")
    with pytest.raises(SpecError, match="optimizer"):
        parse_spec(dict(spec_dict))
    OPTIMIZERS.register("fake_opt", lambda params, c: None)
    LR_SCHEDULERS.register("fake_sched", LRScheduler(lambda opt, c, n: None))
    try:
        assert parse_spec(dict(spec_dict)).search.optimizer == "fake_opt"
    finally:
        OPTIMIZERS.unregister("fake_opt")
        LR_SCHEDULERS.unregister("fake_sched")


def test_a_registered_tune_scheduler_is_accepted_by_the_spec(spec_dict):
    from tlsweep.sweep.schedulers import SCHEDULERS, SchedulerEntry

    spec_dict["scheduler"] = {"type": "fake_tune"}
    with pytest.raises(SpecError, match="unknown scheduler 'fake_tune'.*allowed: asha, fifo"):
        parse_spec(dict(spec_dict))
    SCHEDULERS.register("fake_tune", SchedulerEntry(lambda plan: None))
    try:
        assert parse_spec(dict(spec_dict)).plan().scheduler.type == "fake_tune"
    finally:
        SCHEDULERS.unregister("fake_tune")


def test_a_registered_augment_policy_is_accepted_by_the_spec(spec_dict):
    from tlsweep.data.augment import POLICIES

    spec_dict["data"] = {**spec_dict["data"], "augment": "fake_policy"}
    with pytest.raises(SpecError, match="fake_policy"):
        parse_spec(dict(spec_dict))
    POLICIES.register("fake_policy", lambda size: [])
    try:
        assert parse_spec(dict(spec_dict)).plan().data.augment == "fake_policy"
    finally:
        POLICIES.unregister("fake_policy")


def test_search_fields_and_trial_hyperparameters_are_the_same_set():
    from tlsweep.config.search import HYPERPARAMETERS, Hyperparameters

    assert set(SearchSpace.model_fields) == set(HYPERPARAMETERS) == set(Hyperparameters.model_fields)
    defaults = SearchSpace()
    for name in HYPERPARAMETERS:  # constant spec defaults are the trial config's defaults
        spec_default = getattr(defaults, name)
        if not hasattr(spec_default, "to_optuna"):
            assert getattr(Hyperparameters(), name) == spec_default, name
        assert SearchSpace.model_fields[name].description == Hyperparameters.model_fields[name].description


def test_each_config_field_is_declared_once():
    """The sweep file and the plan share their sections and top-level fields: no class pairs, no restated
    defaults, and every field of the sweep file has a description for the generated reference."""
    import inspect

    from pydantic import BaseModel

    from tlsweep.config import plan, search, sections, spec

    assert set(C.SweepSettings.model_fields) <= set(spec.Spec.model_fields)
    assert set(C.SweepSettings.model_fields) <= set(C.SweepPlan.model_fields)
    for name in C.SweepSettings.model_fields:
        assert spec.Spec.model_fields[name] is C.SweepSettings.model_fields[name] or \
            spec.Spec.model_fields[name].annotation == C.SweepPlan.model_fields[name].annotation, name
    models = {cls for m in (plan, search, sections, spec) for _, cls in inspect.getmembers(m, inspect.isclass)
              if issubclass(cls, BaseModel) and cls.__module__.startswith("tlsweep.config")}
    shapes = {}
    for cls in models:
        inherited = {f for base in cls.__mro__[1:] for f in getattr(base, "model_fields", {})}
        own = frozenset((name, repr(field.default)) for name, field in cls.model_fields.items() if name not in inherited)
        if len(own) >= 2:
            assert own not in shapes, f"{cls.__name__} restates the fields of {shapes[own].__name__}"
            shapes[own] = cls

    def described(model, path):
        for name, field in model.model_fields.items():
            assert field.description, f"{path}{name} has no description"
            inner = field.annotation
            for arg in (inner, *getattr(inner, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    described(arg, f"{path}{name}.")

    described(spec.Spec, "")


def test_plan_and_trial_config_round_trip_through_json(spec_dict, tmp_path):
    spec_dict["heads"] = {"mlp": {"hidden": [16], "dropout": 0.1}}
    spec_dict["search"]["head"] = {"choice": ["mlp", "linear"]}
    plan = parse_spec(spec_dict).plan()
    assert plan.scheduler.mode == "max" and plan.searcher_seed == 0 and plan.num_samples == 2
    again = C.SweepPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    trial = plan.trial_config({"model": "resnet18", "lr": 0.01, "batch_size": 8, "freeze_depth": 0.5,
                               "optimizer": "adam", "lr_scheduler": "none", "head": "mlp"})
    assert trial.model.head == C.HeadConfig(hidden=(16,), dropout=0.1) and trial.data.image_size == 32
    assert C.TrialConfig.from_dict(json.loads(json.dumps(trial.to_dict()))) == trial
    with pytest.raises(C.ConfigError, match="unknown key lrr"):
        C.TrialConfig.from_dict({**trial.to_dict(), "lrr": 1})


def test_an_older_spec_file_is_read_and_a_broken_one_named(spec_dict, tmp_path):
    from tlsweep.results.layout import SPEC_FILE, ResultsError, read_plan

    plan = parse_spec(spec_dict).plan()
    old = plan.to_dict()
    del old["version"]
    old.update(models=[{"name": "resnet18"}], weights="none")  # layout 1 (Spec.to_plain) carried these
    old["scheduler"]["mode"] = None
    (tmp_path / SPEC_FILE).write_text(json.dumps(old))
    assert read_plan(tmp_path) == plan
    (tmp_path / SPEC_FILE).write_text(json.dumps({"name": "x", "epochs": 3}))
    with pytest.raises(ResultsError, match=f"{tmp_path}.*incompatible tlsweep.*models_table"):
        read_plan(tmp_path)


def test_a_fixed_input_size_backbone_at_another_size_is_a_spec_error(spec_dict):
    spec_dict["models"] = ["resnet18", "vit_b_16"]
    with pytest.raises(SpecError, match=r"vit_b_16 takes only 224x224 images.*image_size 32.*image_size: 224"):
        parse_spec(spec_dict)
    spec_dict["data"] = {**spec_dict["data"], "image_size": 224}
    assert parse_spec(spec_dict).plan().models_table["vit_b_16"].name == "vit_b_16"


def test_preprocessing_comes_from_the_weights_metadata():
    from tlsweep.models import IMAGENET, get_backbone

    assert get_backbone("resnet18").preprocessing("none") == IMAGENET
    effnet = get_backbone("efficientnet_b0").preprocessing("imagenet")
    assert effnet.interpolation == "bicubic" and effnet.mean == IMAGENET.mean  # torchvision's own transforms
    for name in ("swin_t", "vit_b_16", "convnext_tiny"):
        entry = get_backbone(name)
        preset = entry.weights("DEFAULT").transforms()
        pre = entry.preprocessing("imagenet")
        assert (pre.mean, pre.std, pre.interpolation) == (tuple(preset.mean), tuple(preset.std),
                                                         preset.interpolation.value)


def test_googlenet_quirk_lives_in_its_registry_entry():
    from tlsweep.models import get_backbone

    entry = get_backbone("googlenet")
    assert entry.builder_kwargs["aux_logits"] is False and entry.after_pretrained is not None
    source = (PACKAGE / "models" / "transfer.py").read_text()
    assert "googlenet" not in source


def test_a_checkpoint_config_of_the_previous_layout_is_read(shapes_root):
    old = {  # what tlsweep.config.space.trial_config wrote into checkpoints before TrialConfig
        "model": {"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "features", "weights": "none",
                  "head": {"hidden": [1024, 512], "dropout": 0.3, "norm": "layernorm"}},
        "lr": 0.001, "batch_size": 8, "freeze_depth": "all", "optimizer": "sgd", "head_dropout": 0.3, "head": None,
        "model_label": "resnet18+mobilenet_v3_small-features",
        "data": {"root": str(shapes_root), "source": "imagefolder", "split": {"train": 0.7, "val": 0.15, "test": 0.15},
                 "val_fraction": None, "subset": None, "image_size": 32, "num_workers": 0, "augment": "none",
                 "image_size_schedule": None, "on_bad_image": "error", "max_image_side": 1024,
                 "cache": {"images": "auto", "features": "auto"}, "cache_dir": None, "skip_files": ["x.png"]},
        "epochs": 3, "seed": 0, "performance": {"precision": "fp32", "channels_last": False, "pin_memory": "auto",
                                                "compile": False}}
    config = C.TrialConfig.from_dict(old)
    assert config.model.head == C.HeadConfig(hidden=(1024, 512), dropout=0.3, norm="layernorm")
    assert config.optimizer == "sgd"
    assert config.data.skip_files == ("x.png",) and config.lr_scheduler == "plateau"  # missing → the default
    assert C.TrialConfig.from_dict(config.to_dict()) == config


def test_trial_status_is_defined_once_from_history_error_and_whether_tune_ended_it():
    import pandas as pd

    from tlsweep.results.layout import Status, trial_status

    two = pd.DataFrame({"training_iteration": [1, 2], "diverged": [False, False]})
    assert trial_status(two, None, 2) is Status.FINISHED
    assert trial_status(two.head(1), None, 2) is Status.STOPPED  # ended early: the scheduler stopped it
    assert trial_status(two.head(1), None, 2, running=True) is Status.INTERRUPTED  # Ctrl-C while it ran
    assert trial_status(two, None, 2, running=True) is Status.FINISHED
    assert trial_status(pd.DataFrame(), None, 2, running=True) is Status.PENDING
    assert trial_status(two.head(1), "RuntimeError: boom", 2) is Status.ERROR
    assert trial_status(two, "retried, then finished", 2) is Status.FINISHED
    assert trial_status(two.assign(diverged=[False, True]), None, 2) is Status.DIVERGED


def test_every_error_for_the_user_derives_from_tlsweep_error():
    """The CLI catches ``TLSweepError`` alone, so each ``*Error`` class of the package must derive from it."""
    import importlib
    import inspect

    found = []
    for path in PACKAGE.rglob("*.py"):
        module = importlib.import_module(_module_name(path))
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and name.endswith("Error"):
                found.append(cls)
    assert len(found) >= 10
    assert [c.__qualname__ for c in found if not issubclass(c, tlsweep.TLSweepError)] == []


def test_the_cli_turns_a_tlsweep_error_into_its_message_and_exit_code(tmp_path):
    from typer.testing import CliRunner

    from tlsweep.cli import app

    result = CliRunner().invoke(app, ["predict", str(tmp_path / "missing.pt"), str(tmp_path)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
