import sys
import textwrap

import pytest

from tlsweep.config.distributions import Choice, LogUniform
from tlsweep.config.spec import SpecError, load_spec, parse_spec

VALID = textwrap.dedent("""\
    name: demo
    data:
      root: data/x
      image_size: 64
    models:
      - resnet18
      - name: mobilenet_v2
        weights: none
      - ensemble: [resnet50, mobilenet_v2]
        fusion: features
    search:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {choice: [8, 16]}
      freeze_depth: {choice: [0, 0.5, all]}
      optimizer: {choice: [adam, sgd]}
    epochs: 5
    num_samples: 3
    """)


def write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_valid_file_parses_with_distributions_and_defaults(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    assert spec.name == "demo"
    assert isinstance(spec.search.lr, LogUniform) and spec.search.lr.bounds() == (1e-4, 1e-2)
    assert isinstance(spec.search.batch_size, Choice) and spec.search.batch_size.values() == [8, 16]
    assert spec.model_labels() == ["resnet18", "mobilenet_v2", "resnet50+mobilenet_v2-features"]
    assert spec.data.root.is_absolute()
    assert spec.storage_dir.endswith("results/demo")
    table = spec.plan().models_table
    assert table["resnet18"].weights == "imagenet"  # sweep-level default
    assert table["mobilenet_v2"].weights == "none"
    assert table["resnet50+mobilenet_v2-features"].ensemble == ("resnet50", "mobilenet_v2")
    assert spec.scheduler.mode == "max"


@pytest.mark.parametrize("change, fragment, line", [
    ("epochs: 5", "epochz: 5", ("did you mean 'epochs'", 16)),
    ("  image_size: 64", "  image_sise: 64", ("did you mean 'image_size'", 4)),
    ("  - resnet18", "  - resnet19", ("unknown backbone 'resnet19' (did you mean 'resnet18'?)", 6)),
    ("lr: {loguniform: [1.0e-4, 1.0e-2]}", "lr: {loguniform: [1.0e-2, 1.0e-4]}", ("range is inverted", 12)),
    ("lr: {loguniform: [1.0e-4, 1.0e-2]}", "lr: {loguniform: [0, 1.0e-2]}", ("loguniform needs low > 0", 12)),
    ("lr: {loguniform: [1.0e-4, 1.0e-2]}", "lr: {logunifrm: [1.0e-4, 1.0e-2]}", ("unknown distribution 'logunifrm'", 12)),
    ("optimizer: {choice: [adam, sgd]}", "optimizer: {choice: [adam, lion]}", ("allowed values: adam, adamw, sgd", 15)),
    ("freeze_depth: {choice: [0, 0.5, all]}", "freeze_depth: 1.5", ("fraction in [0, 1]", 14)),
    ("num_samples: 3", "num_samples: 0", ("greater than or equal to 1", 17)),
    ("    fusion: features", "    fusion: average", ("'logits', 'features' or 'mean'", 10)),
])
def test_mistakes_name_field_line_and_allowed_values(tmp_path, change, fragment, line):
    text, line_no = line
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, VALID.replace(change, fragment)))
    message = str(info.value)
    assert text in message
    assert f"line {line_no}:" in message


def test_all_problems_reported_at_once(tmp_path):
    bad = VALID.replace("epochs: 5", "epochs: 0").replace("num_samples: 3", "num_samples: -1")
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, bad))
    assert len(info.value.problems) == 2
    assert {p[0] for p in info.value.problems} == {"epochs", "num_samples"}


def test_grid_searcher_rejects_continuous_ranges(tmp_path):
    with pytest.raises(SpecError, match="searcher grid needs finite values.*lr"):
        load_spec(write(tmp_path, VALID + "searcher: {type: grid}\n"))


def test_spec_built_in_python_matches_yaml(spec_dict):
    spec = parse_spec(spec_dict)
    plan = spec.plan()
    assert plan.to_dict()["search"]["lr"] == {"loguniform": [1e-3, 1e-2]}
    assert plan.search.optimizer == "adam"
    assert set(plan.models_table) == {"resnet18", "mobilenet_v3_small", "resnet18+mobilenet_v3_small-logits"}


def test_validate_cli_exit_codes(tmp_path, procs):
    good = write(tmp_path, VALID)
    ok = procs.run([sys.executable, "-m", "tlsweep.cli", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "9 trials" in ok.stdout  # 3 models, 3 samples each
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("epochs: 5", "epocs: 5"))
    res = procs.run([sys.executable, "-m", "tlsweep.cli", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "did you mean 'epochs'" in res.stderr
    assert "Traceback" not in res.stderr
