"""GPU memory, checked on the CPU: the estimate (functional attention counted by hand for swin_t and vit_b_16,
the least-frozen depth a thawing trial reaches), where the GPU's size comes from, the resident budget, the
out-of-memory message, the CUDA switches of the fast path, and the latency measured before the trials."""


import pytest
import torch

from tlsweep.config.sections import (
    DataConfig,
    ModelConfig,
    PerformanceConfig,
    Resources,
)
from tlsweep.config.spec import parse_spec
from tlsweep.trial import gpus
from tlsweep.trial.memory import ResidentBudget, TrialMemory, resident_bytes

GiB = 2**30


def test_attention_probabilities_of_swin_t_and_vit_b_16_are_counted_as_by_hand():
    # swin_t at 224 px: 7×7 windows; (windows, heads, blocks) per stage
    swin = sum(w * h * 49 * 49 * b for w, h, b in ((64, 3, 2), (16, 6, 2), (4, 12, 6), (1, 24, 2)))
    *_, saved, _ = gpus.saved_activations(ModelConfig(name="swin_t", weights="none"), 224, 0.0)
    assert saved["_softmax"] == swin == 2_189_712
    # vit_b_16: 12 blocks of 12 heads over 197 tokens (nn.MultiheadAttention, not a leaf module)
    *_, saved, _ = gpus.saved_activations(ModelConfig(name="vit_b_16", weights="none"), 224, 0.0)
    softmax = sum(n for op, n in saved.items() if "softmax" in op)
    assert softmax == 12 * 12 * 197 * 197
    # per block: LN1 input and output, q, k, v, out-proj input, LN2 input and output (8 × 197×768), GELU input
    # and output (2 × 197×3072), the probabilities; + the patch embedding's input
    hand = 12 * (8 * 197 * 768 + 2 * 197 * 3072 + 12 * 197 * 197) + 3 * 224 * 224
    assert hand <= sum(saved.values()) <= 1.3 * hand


def test_autocast_keeps_layer_norm_and_softmax_outputs_in_fp32():
    parts = {p: gpus.estimate_parts(ModelConfig(name="vit_b_16"), 8, 224, p) for p in ("fp32", "bf16")}
    _, _, fp32, other, _ = gpus._counts(ModelConfig(name="vit_b_16", weights="none"), 224, 0.0)
    assert fp32 > 0
    assert parts["bf16"]["activations"] == 8 * (4 * fp32 + 2 * other)
    assert parts["bf16"]["autocast_weight_copies"] > 0 == parts["fp32"]["autocast_weight_copies"]
    assert parts["fp32"]["cuda_context"] == gpus.CUDA_CONTEXT_BYTES and parts["fp32"]["allocator_reserve"] > 0


def test_memory_check_sizes_a_thawing_probe_for_the_least_frozen_depth_it_reaches(spec_dict):
    resnet18 = ModelConfig(name="resnet18")  # 5 stages
    assert gpus.least_frozen(resnet18, ["all"], [None], 5) == 1.0
    assert gpus.least_frozen(resnet18, ["all"], [1], 5) == pytest.approx(0.2)  # thaws 4 stages by epoch 5
    assert gpus.least_frozen(resnet18, ["all", 0.6], [2, None], 3) == pytest.approx(0.4)
    spec_dict.update(models=["resnet18"], epochs=6)
    spec_dict["search"].update(freeze_depth="all", batch_size=64)
    frozen = gpus.worst_case(parse_spec(spec_dict).plan(), "resnet18")[1]
    spec_dict["search"]["unfreeze_every"] = 1
    thawing = gpus.worst_case(parse_spec(spec_dict).plan(), "resnet18")[1]
    assert thawing == gpus.estimate_bytes(resnet18, 64, 32, optimizer="adam", freeze=0.0) > frozen


def test_explicit_gpu_memory_beats_the_clusters_and_this_machines(monkeypatch):
    monkeypatch.setattr(gpus, "local_gpu_memory_gb", lambda: 24.0)
    assert gpus.gpu_memory_gb(Resources(gpu_memory_gb=80), cluster_gb=40) == (80.0, "resources.gpu_memory_gb")
    assert gpus.gpu_memory_gb(Resources(), cluster_gb=40) == (40.0, "the cluster's GPUs")
    assert gpus.gpu_memory_gb(Resources()) == (24.0, "this machine's GPU")
    monkeypatch.setattr(gpus, "local_gpu_memory_gb", lambda: None)
    assert gpus.gpu_memory_gb(Resources())[0] == gpus.ASSUMED_GPU_MEMORY_GB


def test_resident_splits_share_what_the_estimate_leaves_of_the_share():
    assert resident_bytes(0.25, 80 * GiB, 12 * GiB) == 8 * GiB
    assert resident_bytes(0.25, 16 * GiB, 12 * GiB) == 0
    budget = ResidentBudget(resident_bytes(0.5, 8 * GiB, 3 * GiB))  # 1 GiB
    assert budget.take(768 * 2**20)  # train stays on the GPU
    assert not budget.take(512 * 2**20)  # val does not fit in what is left: streamed
    budget.give(768 * 2**20)
    assert budget.take(512 * 2**20)
    assert TrialMemory.for_trial(None, "cpu", 0.25).budget is None  # nothing to budget on the CPU


def test_out_of_memory_names_model_batch_share_and_estimate(shapes_root):

    from .conftest import trial_config_for

    config = trial_config_for(shapes_root, batch_size=256)
    memory = TrialMemory(share=0.25, estimate=int(3.5 * GiB), total=80 * GiB)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        with memory.explained(config):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    message = str(caught.value)
    for part in ("resnet18", "batch size 256", "share 0.25", "80.0 GiB GPU", "estimate 3.5 GiB", "Tried to allocate"):
        assert part in message, part


@pytest.fixture()
def cuda_flags():
    saved = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    yield
    torch.backends.cudnn.benchmark = saved[0]
    torch.set_float32_matmul_precision(saved[1])


def test_cuda_gets_cudnn_benchmark_tf32_and_channels_last_unless_switched_off(cuda_flags):
    from tlsweep.trial.fastpath import FastPath

    assert not FastPath(PerformanceConfig(), torch.device("cpu")).channels_last
    fast = FastPath(PerformanceConfig(), torch.device("cuda"))  # setting the flags needs no GPU
    assert fast.channels_last and torch.backends.cudnn.benchmark
    assert torch.get_float32_matmul_precision() == "high"
    assert not FastPath(PerformanceConfig(channels_last=False), torch.device("cuda")).channels_last
    off = FastPath(PerformanceConfig(cuda_tuning=False), torch.device("cuda"))
    assert not off.channels_last and not torch.backends.cudnn.benchmark
    assert torch.get_float32_matmul_precision() == "highest"
    spec = parse_spec({"name": "x", "data": {"root": "."}, "models": ["resnet18"],
                       "performance": {"cuda_tuning": False}})
    assert spec.plan().performance.cuda_tuning is False


def test_auto_input_keeps_policies_with_per_image_ops_on_the_cpu(shapes_root, tmp_path):
    from tlsweep.data import load_splits
    from tlsweep.data.cache import decoded as I
    from tlsweep.data.cache.pipeline import device_input

    from .conftest import trial_config_for

    splits = load_splits(DataConfig(root=shapes_root), 0)
    path = I.build_images(splits.train, 32, tmp_path)
    config = trial_config_for(shapes_root)
    cuda = torch.device("cuda")
    assert device_input(config, cuda, I.CachedImages(path, 32, "basic", True))
    blur = I.CachedImages(path, 32, [{"GaussianBlur": {"kernel_size": 3}}, "RandomHorizontalFlip"], True)
    assert not device_input(config, cuda, blur)
    forced = trial_config_for(shapes_root, performance={"input": "device"})
    assert device_input(forced, cuda, blur)


def test_a_probe_leaving_the_feature_cache_pins_its_new_loaders(shapes_root, tmp_path):
    from tlsweep.trial.loop import Trial

    from .conftest import trial_config_for, with_data

    torch.set_num_threads(1)
    config = trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, freeze_depth="all",
                              unfreeze_every=1, performance={"pin_memory": True})
    config = with_data(config, cache={"images": "off", "features": "on"}, cache_dir=str(tmp_path))
    trial = Trial(config, device="cpu")
    assert trial.train_size is None and not trial._pin  # cached features: nothing to pin
    trial._thaw(1)
    assert trial.train_size == 32 and trial._pin and trial.train_loader.pin_memory
