"""GPU resources without a GPU: ``gpu: auto`` and numbers, the multi-GPU rejection, the per-trial device and
what it records, the memory estimate and the preflight memory check, and validating cluster sweep files here."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tlsweep.config.sections import ModelConfig
from tlsweep.config.spec import SpecError, load_spec, parse_spec
from tlsweep.sweep.preflight import preflight
from tlsweep.trial import gpus

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
NO_GPU = torch.cuda.device_count() == 0
GiB = 2**30


def plan_for(spec_dict, **fields):
    return parse_spec({**spec_dict, **fields}).plan()


def test_gpu_defaults_to_auto_and_takes_numbers(spec_dict):
    assert parse_spec(spec_dict).resources.gpu == "auto"
    spec = parse_spec({**spec_dict, "resources": {"gpu": 0.25},
                       "models": [{"name": "resnet18", "resources": {"gpu": "auto"}}, "mobilenet_v3_small"]})
    assert {k: (r.cpu, r.gpu) for k, r in spec.plan().model_resources.items()} == {
        "resnet18": (1.0, "auto"), "mobilenet_v3_small": (1.0, 0.25)}


@pytest.mark.parametrize("gpu", [2, 1.5])
def test_more_than_one_gpu_per_trial_is_rejected_with_the_reason(tmp_path, spec_dict, gpu):
    import yaml

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**spec_dict, "resources": {"cpu": 4, "gpu": gpu}}, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (where, line, message), = err.value.problems
    assert where == "resources.gpu" and line is not None
    assert "one GPU" in message and "data-parallel" in message


def test_auto_gives_the_registry_share_on_a_gpu_cluster_and_none_without(spec_dict):
    plan = plan_for(spec_dict, models=["mobilenet_v3_small", "resnet50", {"name": "resnet18",
                                                                            "resources": {"gpu": 1}}])
    with_gpus = gpus.resolve_resources(plan, cluster_gpus=8, memory_gb=80)
    assert {k: v.gpu for k, v in with_gpus.model_resources.items()} == {
        "mobilenet_v3_small": 0.25, "resnet50": 1.0, "resnet18": 1.0}
    without = gpus.resolve_resources(plan, cluster_gpus=0, memory_gb=80)
    assert {k: v.gpu for k, v in without.model_resources.items()} == {
        "mobilenet_v3_small": 0.0, "resnet50": 0.0, "resnet18": 1.0}
    assert plan.model_resources["resnet50"].gpu == "auto"  # resolving does not change the input
    assert with_gpus.resources_of("mobilenet_v3_small").demand() == {"CPU": 1.0, "GPU": 0.25}
    with pytest.raises(ValueError, match="still `auto`"):
        plan.resources_of("resnet50").demand()


def test_auto_raises_a_share_until_the_estimate_fits():
    model = ModelConfig(name="mobilenet_v2")
    need = gpus.estimate_bytes(model, 64, 224, "fp32")
    assert gpus.auto_share(model, need, memory_gb=80) == 0.25
    assert 0.25 * 16 * GiB < need <= 0.5 * 16 * GiB
    assert gpus.auto_share(model, need, memory_gb=16) == 0.5


def test_memory_estimate_is_at_or_above_the_peaks_measured_on_an_h100():
    # peaks (GiB) of resnet50 / mobilenet_v2 at 224 px, batch 64, Adam, on an H100 (shared/gpu/README.md)
    measured = {("resnet50", "fp32"): 5.6, ("resnet50", "bf16"): 3.1,
                ("mobilenet_v2", "fp32"): 4.8, ("mobilenet_v2", "bf16"): 2.5}
    for (name, precision), peak in measured.items():
        estimate = gpus.estimate_bytes(ModelConfig(name=name), 64, 224, precision) / GiB
        assert peak <= estimate <= 1.6 * peak, (name, precision, estimate)
    resnet50 = ModelConfig(name="resnet50")
    probe = gpus.estimate_bytes(resnet50, 64, 224, "fp32", freeze="all")
    assert probe < gpus.estimate_bytes(resnet50, 64, 224, "fp32") / 5  # frozen layers keep nothing


def test_preflight_names_model_batch_and_share_when_memory_does_not_fit(spec_dict):
    spec_dict = {**spec_dict, "models": [{"name": "resnet50", "resources": {"gpu": 0.25}}, "mobilenet_v3_small"],
                 "search": {**spec_dict["search"], "batch_size": {"choice": [32, 256]}},
                 "resources": {"gpu": "auto", "gpu_memory_gb": 16},
                 "data": {**spec_dict["data"], "image_size": 224}}
    spec = parse_spec(spec_dict)
    problems = [p for p in preflight(spec, data=False, local_run=False).problems if p[0] == "search.batch_size"]
    assert len(problems) == 1, problems
    message = problems[0][2]
    assert "resnet50 at batch size 256" in message and "GPU share 0.25" in message and "16 GiB" in message
    small = parse_spec({**spec_dict, "search": {**spec_dict["search"], "batch_size": 16}})
    assert not [p for p in preflight(small, data=False, local_run=False).problems if p[0] == "search.batch_size"]


@pytest.mark.skipif(not NO_GPU, reason="checks a machine without GPUs")
@pytest.mark.parametrize("name", ["vehicles_all_models", "vehicles_ensembles", "cifar10_frozen",
                                  "drones_mobilenet_v2", "cats_dogs_resnet50"])
def test_cluster_sweep_validates_here_with_a_warning_and_a_local_run_is_refused(name):
    from tlsweep.cli import app

    path = SWEEPS / f"{name}.yaml"
    assert load_spec(path).resources.gpu == 1  # written for a cluster
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    assert "warning" in out.output and "1 GPU" in out.output and "ok" in out.output
    problems = preflight(load_spec(path), data=False, local_run=True).problems
    assert [p[0] for p in problems] == ["resources.gpu"]


def test_trial_given_no_gpu_hides_them_and_uses_the_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpus.trial_device([], wants_gpu=False) == torch.device("cpu")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    if torch.cuda.is_available():
        assert gpus.trial_device(["1"], wants_gpu=True) == torch.device("cuda", 0)
    else:  # a GPU share without CUDA is an error, unless a test allows the CPU
        with pytest.raises(RuntimeError, match="sees no CUDA device"):
            gpus.trial_device(["1"], wants_gpu=True)
        monkeypatch.setenv(gpus.ALLOW_CPU_FALLBACK_ENV, "1")
        assert gpus.trial_device(["1"], wants_gpu=True) == torch.device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_device_metrics_on_the_cpu():
    assert gpus.device_metrics(torch.device("cpu")) == {"device": "cpu", "gpu_name": None, "peak_gpu_mem_gb": None,
                                                        "peak_gpu_reserved_gb": None}


def test_trial_records_its_device_each_epoch(shapes_root):
    from tlsweep.trial.loop import Trial

    from .conftest import trial_config_for

    torch.set_num_threads(1)
    trial = Trial(trial_config_for(shapes_root, epochs=1), device="cpu")
    (metrics,) = list(trial.run())
    assert (metrics["device"], metrics["gpu_name"], metrics["peak_gpu_mem_gb"]) == ("cpu", None, None)
    assert set(trial.setup_seconds) == {"data_s", "model_s", "loaders_s"}


@pytest.mark.slow
@pytest.mark.skipif(not NO_GPU, reason="checks a cluster without GPUs")
def test_validate_with_an_address_checks_the_cluster(tmp_path, spec_dict, procs):
    """``validate --address`` attaches to the cluster (here a fresh local Ray): GPUs it lacks are an error."""
    import sys

    import yaml

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**spec_dict, "resources": {"cpu": 1, "gpu": 1}}, sort_keys=False))
    cmd = [sys.executable, "-m", "tlsweep.cli", "validate", str(path)]
    assert procs.run(cmd, capture_output=True, text=True).returncode == 0
    out = procs.run(cmd + ["--address", "local"], capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no node of the Ray cluster can run a trial" in out.stderr and "1 GPU" in out.stderr
    path.write_text(yaml.safe_dump(spec_dict, sort_keys=False))  # gpu: auto → none on a cluster without GPUs
    ok = procs.run(cmd + ["--address", "local"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
