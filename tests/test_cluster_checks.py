"""Ray-free checks of the cluster layer: per-model resources, early resource/storage failures, ASHA state
that survives a resume, unfinished-sweep detection and the per-trial node column."""

import json
import pickle

import pandas as pd
import pytest
import yaml

from tlsweep.config.sections import Resources
from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.results.layout import trial_nodes
from tlsweep.sweep.cluster import (
    ResourceError,
    StorageError,
    check_resources,
    check_storage,
    filesystem_type,
    trial_resources,
)


def node(ip="10.0.0.1", cpu=4, gpu=0, alive=True):
    return {"NodeID": f"id-{ip}", "NodeManagerAddress": ip, "Alive": alive,
            "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


@pytest.fixture()
def plain(spec_dict):
    spec_dict["models"] = [{"name": "mobilenet_v3_small", "resources": {"gpu": 0.25}},
                           {"name": "vit_b_16", "resources": {"gpu": 1, "cpu": 4}}, "resnet18"]
    spec_dict["resources"] = {"cpu": 2, "gpu": 0.5}
    spec_dict["data"] = {**spec_dict["data"], "image_size": 224}  # vit_b_16 takes 224 px only
    return parse_spec(spec_dict).plan()


def test_model_resources_override_the_sweep_defaults(plain):
    assert plain.model_resources == {"mobilenet_v3_small": Resources(cpu=2, gpu=0.25),
                                     "vit_b_16": Resources(cpu=4, gpu=1), "resnet18": Resources(cpu=2, gpu=0.5)}
    assert plain.models_table["vit_b_16"].resources is None  # folded into model_resources
    res = trial_resources(plain)
    assert res.demand("mobilenet_v3_small") == {"CPU": 2, "GPU": 0.25}
    pgf = res({"model": "vit_b_16", "lr": 1e-3})
    assert pgf.bundles == [{"CPU": 4, "GPU": 1}]
    assert pickle.loads(pickle.dumps(res)) == res  # Tune ships it with the trainable


def test_fractional_gpu_above_one_is_rejected(spec_dict):
    spec_dict["models"] = [{"name": "resnet18", "resources": {"gpu": 1.5}}]
    with pytest.raises(SpecError, match=r"models\.0\.resources\.gpu: more than one GPU"):
        parse_spec(spec_dict)


def test_gpu_sweep_on_cpu_cluster_fails_early_naming_the_model(plain):
    with pytest.raises(ResourceError, match=r"vit_b_16: 4 CPU, 1 GPU.*0 GPU in all"):
        check_resources(plain, [node(cpu=8), node("10.0.0.2", cpu=8)])
    with pytest.raises(ResourceError, match=r"vit_b_16") as err:
        check_resources(plain, [node(cpu=8, gpu=0.5)])  # the small backbones would fit
    assert "mobilenet_v3_small" not in str(err.value)
    check_resources(plain, [node(cpu=2, gpu=1), node("10.0.0.2", cpu=4, gpu=1)])


def test_local_storage_with_remote_nodes_fails_unless_shared():
    nodes = [node("10.0.0.1"), node("10.0.0.2")]
    with pytest.raises(StorageError, match=r"10\.0\.0\.2.*s3://.*storage_shared: true"):
        check_storage("/home/me/results/x", nodes, driver_ip="10.0.0.1")
    check_storage("/home/me/results/x", [node("10.0.0.1"), node("10.0.0.1")], driver_ip="10.0.0.1")
    check_storage("s3://bucket/sweeps/x", nodes, driver_ip="10.0.0.1")
    check_storage("/mnt/nfs/x", nodes, driver_ip="10.0.0.1", shared=True)
    check_storage("/mnt/nfs/x", nodes, driver_ip="10.0.0.1", fs_type="nfs4")


def test_filesystem_type_takes_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\n"
                      "tmpfs /mnt/shared/tmp tmpfs rw 0 0\n")
    assert filesystem_type("/mnt/shared/sweeps/a", mounts) == "nfs4"
    assert filesystem_type("/mnt/shared/tmp/a", mounts) == "tmpfs"
    assert filesystem_type("/home/me", mounts) == "overlay"
    assert filesystem_type("/mnt/sharedx", mounts) == "overlay"


def test_resumable_asha_rungs_round_trip_through_the_callback(tmp_path):
    from tlsweep.sweep.scheduler_state import STATE_FILE, ResumableASHA, SchedulerState

    asha = ResumableASHA(time_attr="training_iteration", metric="val_acc", mode="max", max_t=4, grace_period=1,
                         reduction_factor=2)
    rungs = {m: rec for m, rec in asha._brackets[0]._rungs}
    rungs[1].update(a=0.5, b=0.7)
    rungs[2]["b"] = 0.8
    callback = SchedulerState(asha, str(tmp_path))
    state = callback.get_state()
    assert yaml.safe_load((tmp_path / STATE_FILE).read_text()) == state["scheduler"]

    # Tune pickles the Tuner (scheduler and callbacks together) before fit: the callback must still
    # point at the scheduler Tune uses after unpickling, and fill its empty rungs on restore.
    fresh = ResumableASHA(time_attr="training_iteration", metric="val_acc", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2)
    tuner_state = pickle.loads(pickle.dumps({"scheduler": fresh, "callbacks": [SchedulerState(fresh)]}))
    tuner_state["callbacks"][0].set_state(json.loads(json.dumps(state)))
    restored = {m: rec for m, rec in tuner_state["scheduler"]._brackets[0]._rungs}
    assert restored[1] == {"a": 0.5, "b": 0.7} and restored[2] == {"b": 0.8}


def _experiment_state(folder, statuses):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tuner.pkl").write_bytes(b"x")
    trials = [[json.dumps({"trial_id": str(i), "status": s}), "{}"] for i, s in enumerate(statuses)]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trials}))


def test_sweep_state_detects_unfinished_sweeps(tmp_path):
    from tlsweep.sweep.resume import sweep_state

    assert sweep_state(str(tmp_path / "nothing")) == "none"
    assert sweep_state("s3://bucket/x") == "none"
    _experiment_state(tmp_path / "a", ["TERMINATED", "RUNNING"])
    assert sweep_state(str(tmp_path / "a")) == "unfinished"
    _experiment_state(tmp_path / "b", ["TERMINATED", "ERROR"])
    assert sweep_state(str(tmp_path / "b"), expected_trials=2) == "finished"
    assert sweep_state(str(tmp_path / "b"), expected_trials=4) == "unfinished"  # searcher had more to suggest


def test_trial_nodes_lists_each_node_once_in_order():
    history = pd.DataFrame({"node_ip": ["10.0.0.2", "10.0.0.2", "10.0.0.1"],
                            "node_id": ["bbbbbbbbbb", "bbbbbbbbbb", "aaaaaaaaaa"]})
    assert trial_nodes(history) == "10.0.0.2/bbbbbbbb → 10.0.0.1/aaaaaaaa"
    assert trial_nodes(pd.DataFrame({"val_acc": [0.5]})) is None


def test_resume_refuses_a_changed_sweep_file(plain, tmp_path):
    from tlsweep.results.layout import write_plan
    from tlsweep.sweep.resume import changed_since

    storage = str(tmp_path / "sweep")
    assert changed_since(storage, plain) == []  # nothing stored yet
    write_plan(plain.replace(data=plain.data.replace(skip_files=("x.jpg",))), storage)
    assert changed_since(storage, plain) == []  # same file; the preflight's skip list is ignored
    edited = plain.replace(epochs=plain.epochs + 1, models_table=dict(list(plain.models_table.items())[:1]))
    assert changed_since(storage, edited) == ["models_table", "epochs"]


def test_error_message_reads_exceptions_and_stored_error_text():
    from tlsweep.sweep.runner import error_message

    stored = "Failure # 1\nTraceback (most recent call last):\n  File \"t.py\"\nRuntimeError: size mismatch for fc"
    assert error_message(stored) == "RuntimeError: size mismatch for fc"  # a Result read back from storage
    assert error_message(ValueError("bad lr")) == "ValueError: bad lr"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_rejects_an_address_without_a_cluster_and_a_malformed_one():
    from tlsweep.sweep.cluster import ClusterError, probe_cluster

    port = _free_port()
    with pytest.raises(ClusterError, match=rf"no Ray cluster answers at 127\.0\.0\.1:{port} .*GCS port"):
        probe_cluster(f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match="not HOST:PORT"):
        probe_cluster("headnode")
    probe_cluster("auto")  # left to Ray


def test_run_with_nothing_at_the_address_exits_2_in_one_line(spec_dict, tmp_path, procs):
    """Ray alone retries for minutes printing GCS warnings; the CLI answers at once (the timeout is the bound)."""
    import os
    import sys

    spec_dict.update(models=["mobilenet_v3_small"], scheduler={"type": "fifo"})
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(spec_dict))
    port = _free_port()
    res = procs.run([sys.executable, "-m", "tlsweep.cli", "run", str(sweep), "--address", f"127.0.0.1:{port}"],
                    capture_output=True, text=True, timeout=60, env={**os.environ, "RAY_ADDRESS": ""})
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}"), res.stderr
    assert not os.path.exists(spec_dict["storage"])
