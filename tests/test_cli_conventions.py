"""CLI conventions: --version, -h, choices in --help, environment variables, --set overrides, --json."""

from __future__ import annotations

import importlib.metadata as md
import json
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from tlsweep.cli import app

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def test_version_and_short_help():
    res = invoke("--version")
    assert res.exit_code == 0 and res.output.startswith(f"tlsweep {md.version('tlsweep')} (torch {md.version('torch')}")
    for args in (["-h"], ["run", "-h"], ["data", "-h"], ["weights", "prefetch", "-h"]):
        res = invoke(*args)
        assert res.exit_code == 0 and "Usage" in res.output, args


def test_help_documents_environment_variables():
    out = invoke("-h", env={"COLUMNS": "250"}).output
    for var in ("RAY_ADDRESS", "TORCH_HOME", "TLSWEEP_CACHE", "XDG_CACHE_HOME", "TLSWEEP_TORCH_THREADS"):
        assert var in out
    assert "RAY_ADDRESS" in invoke("run", "-h", env={"COLUMNS": "250"}).output


def test_enum_options_list_their_choices_and_reject_others():
    from tlsweep.deploy.export import FORMAT_FILES, ONNX_EXPORTERS

    out = invoke("export", "-h", env={"COLUMNS": "250"}).output
    assert "torchscript|onnx|both" in out and "|".join(ONNX_EXPORTERS) in out
    assert {"torchscript", "onnx"} == set(FORMAT_FILES)
    assert "cpu|cuda|auto" in invoke("predict", "-h", env={"COLUMNS": "250"}).output
    assert "auto|live|plain|none" in invoke("run", "-h", env={"COLUMNS": "250"}).output
    res = invoke("export", "ckpt.pt", "--out", "x", "--format", "tflite", env={"COLUMNS": "250"})
    assert res.exit_code == 2 and "'tflite' is not one of 'torchscript', 'onnx', 'both'" in res.output


def test_cache_root_honours_tlsweep_cache_then_xdg(monkeypatch, tmp_path):
    from tlsweep.data.cache.store import cache_root

    monkeypatch.delenv("TLSWEEP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "tlsweep"
    monkeypatch.setenv("TLSWEEP_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_root(SimpleNamespace(cache_dir=str(tmp_path / "spec"))) == tmp_path / "spec"  # data.cache_dir
    monkeypatch.delenv("TLSWEEP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(cache_root()).endswith(".cache/tlsweep")


@pytest.fixture()
def sweep_file(spec_dict, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec_dict, sort_keys=False))
    return path


def test_validate_json_with_set_overrides(sweep_file, spec_dict):
    res = invoke("validate", sweep_file, "--json", "--set", "epochs=2", "--set", "num_samples=1",
                 "--set", "search.lr={loguniform: [1.0e-4, 1.0e-3]}")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] and out["epochs"] == 2 and out["trials"] == 3 and out["storage"] == spec_dict["storage"]
    from tlsweep.config.spec import load_spec, parse_sets

    spec = load_spec(sweep_file, parse_sets(["search.lr={loguniform: [1.0e-4, 1.0e-3]}"]))
    assert spec.search.lr.bounds() == (1e-4, 1e-3) and spec.search.batch_size.values() == [8, 16]  # merged, not replaced


def test_set_errors_name_the_field_and_say_from_set(sweep_file):
    res = invoke("validate", sweep_file, "--json", "--set", "epochs=0", "--set", "scheduler.grace_period=x")
    assert res.exit_code == 2
    problems = {p["path"]: p for p in json.loads(res.stdout)["problems"]}
    assert set(problems) == {"epochs", "scheduler.grace_period"}
    assert all(p["line"] is None and p["message"].endswith("(from --set)") for p in problems.values())
    res = invoke("validate", sweep_file, "--set", "epochs")
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    res = invoke("validate", sweep_file, "--set", "serch.lr=0.1")
    assert res.exit_code == 2 and "did you mean 'search'" in res.output


def test_status_of_a_folder_without_a_sweep(tmp_path):
    res = invoke("status", tmp_path)
    assert res.exit_code == 2 and "no tlsweep sweep" in res.output
