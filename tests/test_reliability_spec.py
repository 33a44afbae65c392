"""Bad sweep files: every mistake reported before Ray starts, with YAML path, line and a clear message."""

import sys
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsweep.config.sections import ModelConfig
from tlsweep.config.spec import SpecError, load_spec, parse_spec
from tlsweep.sweep.preflight import check_or_raise, preflight

BASE = textwrap.dedent("""\
    name: tiny
    data:
      root: {root}
      image_size: 32
    weights: none
    models:
      - resnet18
      - mobilenet_v3_small
    search:
      lr: {{loguniform: [1.0e-3, 1.0e-2]}}
      batch_size: {{choice: [8, 16]}}
      freeze_depth: 0.5
      optimizer: adam
    epochs: 2
    num_samples: 2
    storage: {storage}
    """)


@pytest.fixture()
def sweep_text(shapes_root, tmp_path):
    return BASE.format(root=shapes_root, storage=tmp_path / "results" / "tiny")


def problems(tmp_path, text, data=True):
    """The SpecError of a sweep file: from reading it, else from preflight (dataset, machine, storage)."""
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    try:
        check_or_raise(load_spec(path), data=data)
    except SpecError as err:
        return err
    return None


CASES = [
    # (find, replace, expected message fragment, line)
    ("epochs: 2", "epochz: 2", "did you mean 'epochs'", 14),
    ("  image_size: 32", "  image_sise: 32", "did you mean 'image_size'", 4),
    ("epochs: 2", "epochs: many", "valid integer", 14),
    ("  image_size: 32", "  image_size: [32]", "valid integer", 4),
    ("  - resnet18", "  - resnet19", "unknown backbone 'resnet19' (did you mean 'resnet18'?); allowed: ", 7),
    ("  optimizer: adam", "  optimizer: lion", "allowed values: adam, adamw, sgd", 13),
    ("  lr: {loguniform: [1.0e-3, 1.0e-2]}", "  lr: 0", "must be > 0", 10),
    ("  lr: {loguniform: [1.0e-3, 1.0e-2]}", "  lr: -0.1", "must be > 0", 10),
    ("  lr: {loguniform: [1.0e-3, 1.0e-2]}", "  lr: {loguniform: [1.0e-2, 1.0e-3]}", "range is inverted", 10),
    ("  lr: {loguniform: [1.0e-3, 1.0e-2]}", "  lr: {uniform: [0, 0.1]}", "must be > 0", 10),
    ("  batch_size: {choice: [8, 16]}", "  batch_size: {choice: []}", "takes a non-empty list", 11),
    ("  batch_size: {choice: [8, 16]}", "  batch_size: {int: [16, 8]}", "range is inverted", 11),
    ("  batch_size: {choice: [8, 16]}", "  batch_size: 0", "must be >= 1", 11),
    ("  freeze_depth: 0.5", "  freeze_depth: 1.5", "or a whole number >= 2 of stages", 12),
    ("  freeze_depth: 0.5", "  freeze_depth: -1", "fraction in [0, 1]", 12),
    ("num_samples: 2", "num_samples: 0", "greater than or equal to 1", 15),
    ("num_samples: 2", "num_samples: -3", "greater than or equal to 1", 15),
    ("  image_size: 32", "  image_size: 32\n  on_bad_image: ignore", "'error' or 'skip'", 5),
    ("  image_size: 32", "  image_size: 32\n  max_image_side: 20", "data: max_image_side (20) is smaller than image_size (32)", 3),
    ("  optimizer: adam", "  optimizer: adam\n  class_weighted_loss: maybe", "must be true or false", 14),
    ("epochs: 2", "epochs: 2\nscheduler: {grace_period: 5}", "grace_period (5) exceeds epochs (2)", 1),
    ("epochs: 2", "epochs: 2\nresources: {gpu: -1}", "greater than or equal to 0", 15),
    # checks that need more than the file (tlsweep.sweep.preflight)
    ("  freeze_depth: 0.5", "  freeze_depth: 9", "freeze_depth 9 exceeds resnet18's 5 stages", 12),
    ("  freeze_depth: 0.5", "  freeze_depth: {choice: [0, 6]}", "freeze_depth 6 exceeds resnet18's 5", 12),
    ("  batch_size: {choice: [8, 16]}", "  batch_size: {choice: [8, 512]}",
     "batch size 512 is larger than the train split (72 images)", 11),
    ("  root: ", "  root: /nonexistent", "does not exist or is not a folder", 3),
]


@pytest.mark.parametrize("find, replace, fragment, line", CASES, ids=[c[1].strip()[:40] for c in CASES])
def test_bad_sweep_file_names_field_line_and_fix(tmp_path, sweep_text, find, replace, fragment, line):
    assert find in sweep_text
    text = sweep_text.replace(find, replace, 1)
    if find == "  root: ":  # replace the whole line
        text = "\n".join(replace if ln.startswith(find) else ln for ln in sweep_text.splitlines())
    err = problems(tmp_path, text)
    assert err is not None, f"{replace!r} was accepted"
    message = err.format()
    assert fragment in message
    assert f"line {line}:" in message
    assert message.count("\n") == len(err.problems)  # one line per problem under the header


def test_valid_file_passes_preflight_with_data(tmp_path, sweep_text):
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep_text)
    checked = check_or_raise(load_spec(path))
    assert checked.counts == {"train": 72, "val": 36, "test": 36}
    assert checked.warnings == [] and checked.skip_files == []


def test_freeze_depth_as_stage_count_builds(tmp_path, sweep_text):
    from tlsweep.models import build_model

    err = problems(tmp_path, sweep_text.replace("  freeze_depth: 0.5", "  freeze_depth: 4"))
    assert err is None
    model = build_model(ModelConfig.model_validate({"name": "resnet18", "weights": "none"}), 3, 4)
    assert model.frozen_stages == 4 and not model.fully_frozen


def test_storage_under_a_file_and_missing_gpu(tmp_path, sweep_text):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    text = sweep_text.replace(f"storage: {tmp_path / 'results' / 'tiny'}", f"storage: {blocker / 'x'}")
    text += "resources: {gpu: 1}\n"
    err = problems(tmp_path, text, data=False)
    paths = {p for p, _, _ in err.problems}
    assert "storage" in paths and "is a file, not a folder" in err.format()
    import torch

    if torch.cuda.device_count() == 0:
        assert "resources.gpu" in paths and "this machine has 0" in err.format()


def test_problems_from_file_and_data_all_at_once(tmp_path, sweep_text):
    text = sweep_text.replace("  freeze_depth: 0.5", "  freeze_depth: 9").replace(
        "  batch_size: {choice: [8, 16]}", "  batch_size: 100")
    err = problems(tmp_path, text)
    assert {p for p, _, _ in err.problems} == {"search.freeze_depth", "search.batch_size"}


def test_validate_cli_checks_data_and_exits_2_without_traceback(tmp_path, sweep_text, procs):
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep_text.replace("  batch_size: {choice: [8, 16]}", "  batch_size: 128"))
    cmd = [sys.executable, "-m", "tlsweep.cli", "validate", str(path)]
    assert procs.run(cmd + ["--no-data"], capture_output=True, text=True).returncode == 0
    res = procs.run(cmd + ["--data"], capture_output=True, text=True)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "line 11: search.batch_size: batch size 128 is larger than the train split" in res.stderr
    assert "Traceback" not in res.stderr


# --- property: random mutations either validate or fail with a SpecError, never anything else ------------

VALID = yaml.safe_load(BASE.format(root="/nonexistent/data", storage="/tmp/tlsweep-hypothesis/tiny"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["all", "none", "resnet18", "adam", "grid", "asha"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    import copy

    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_sweep_files_validate_or_fail_cleanly(data):
    text = yaml.safe_dump(data)
    try:
        spec = parse_spec(yaml.safe_load(text), "sweep.yaml", yaml.compose(text))
        report = preflight(spec, data=False)
    except SpecError as err:
        assert err.problems and all(isinstance(msg, str) and msg for _, _, msg in err.problems)
        assert err.format().startswith("sweep.yaml: ")
        return
    for path, line, message in report.problems:  # the same (YAML path, line, message) shape as SpecError's
        assert path and isinstance(message, str) and message and (line is None or line >= 1)
    if report.problems:
        with pytest.raises(SpecError) as err:
            report.raise_problems("sweep.yaml")
        assert err.value.format().startswith("sweep.yaml: ")
