"""GPU facts in one place: the GPU share a trial gets (``resources.gpu: auto``), an estimate of the GPU memory a
trial needs, the device a trial trains on and what it records about it, and hiding GPUs from trials given none.

Memory estimate (bytes) = parameters × 4 (fp32 weights) + trainable parameters × 4 × (1 gradient + optimizer
buffers: 2 for Adam/AdamW, 1 for SGD) + batch × activation bytes per image (the outputs of every leaf module from
the first trainable one on, counted once per backbone and size by a forward on the meta device: 4 bytes fp32,
2 bf16/fp16) + 256 MiB of workspace. It gives 8.2 / 4.4 GiB for resnet50 at 224 px, batch 64,
fp32 / bf16 with Adam (peaks measured on an H100: 5.6 / 3.1) and 4.9 / 2.6 GiB for mobilenet_v2 (measured
4.8 / 2.5).
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..config.plan import SweepPlan
from ..config.sections import ModelConfig, Resources

ASSUMED_GPU_MEMORY_GB = 16.0  # the memory check's GPU when neither this machine nor `resources.gpu_memory_gb` says
SHARES = (0.25, 0.5, 1.0)  # the shares `auto` chooses from
HIDE_GPUS_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}  # Ray 2.60: CUDA_VISIBLE_DEVICES="" for gpu-0 workers
WORKSPACE_BYTES = 256 * 2**20
OPTIMIZER_BUFFERS = {"adam": 2, "adamw": 2, "sgd": 1}
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GiB = 2**30
AUTO = "auto"


def registry_share(model: ModelConfig) -> float:
    """The backbone's default GPU share (the largest of an ensemble's members)."""
    from ..models.backbones import get_backbone

    return max(get_backbone(n).gpu_share for n in model.backbones)


@lru_cache(maxsize=256)
def _counts(model_cfg: ModelConfig, image_size: int, freeze) -> tuple[int, int, int]:
    """(parameters, trainable parameters, activation elements per image) of a model, built on the meta device."""
    import torch

    from ..models import build_model

    with torch.device("meta"):
        model = build_model(model_cfg, 10, freeze)
    outputs: list[tuple[int, bool]] = []

    def hook(module, _inputs, output):
        if isinstance(output, torch.Tensor):
            trains = any(p.requires_grad for p in module.parameters(recurse=False))
            outputs.append((output.numel(), trains))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    first = next((i for i, (_, trains) in enumerate(outputs) if trains), len(outputs))
    saved = sum(n for n, _ in outputs[first:])
    peak_frozen = 2 * max((n for n, _ in outputs[:first]), default=0)  # a frozen layer's input and output
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, trainable, max(saved, peak_frozen)


def estimate_bytes(model: ModelConfig, batch_size: int, image_size: int, precision: str = "fp32",
                   optimizer: str = "adam", freeze=0.0) -> int:
    """GPU memory one training step needs (see the module docstring)."""
    params, trainable, activations = _counts(model.replace(weights="none"), int(image_size), freeze)
    state = params * 4 + trainable * 4 * (1 + OPTIMIZER_BUFFERS.get(optimizer, 2))
    return int(state + batch_size * activations * PRECISION_BYTES.get(precision, 4) + WORKSPACE_BYTES)


def worst_case(plan: SweepPlan, label: str) -> tuple[int, int]:
    """(largest batch size, estimated bytes at that batch) over a model's searched values: the least frozen
    freeze depth, the largest image size of the schedule, the optimizer with the most state."""
    from ..models.backbones import get_backbone
    from ..models.transfer import frozen_stage_count

    model = plan.models_table[label]
    search, data = plan.search, plan.data
    batch = int(max(b for b in search.values_of("batch_size") if isinstance(b, (int, float))))
    stages = get_backbone(model.backbones[0]).num_stages
    freezes = search.values_of("freeze_depth")

    def frozen(v):
        try:
            return frozen_stage_count(v, stages)
        except ValueError:
            return None  # an invalid depth: preflight's freeze-depth check reports it

    valid = [v for v in freezes if frozen(v) is not None]
    freeze = min(valid, key=frozen) if valid else 0.0
    size = max([data.image_size] + [int(p.size) for p in data.image_size_schedule])
    optimizer = max(search.values_of("optimizer"), key=lambda o: OPTIMIZER_BUFFERS.get(o, 2))
    return batch, estimate_bytes(model, batch, size, plan.performance.precision, optimizer, freeze)


def local_gpu_memory_gb() -> float | None:
    """Total memory of this machine's first visible GPU, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GiB


def gpu_memory_gb(resources: Resources) -> tuple[float, str]:
    """(GiB, where the figure comes from): this machine's GPU, else ``resources.gpu_memory_gb``, else assumed."""
    local = local_gpu_memory_gb()
    if local:
        return local, "this machine's GPU"
    if resources.gpu_memory_gb:
        return float(resources.gpu_memory_gb), "resources.gpu_memory_gb"
    return ASSUMED_GPU_MEMORY_GB, "assumed; set resources.gpu_memory_gb"


def auto_share(model: ModelConfig, need_bytes: int, memory_gb: float) -> float:
    """The backbone's default share, raised to the smallest of ``SHARES`` whose memory holds ``need_bytes``."""
    base = registry_share(model)
    for share in SHARES:
        if share >= base and share * memory_gb * GiB >= need_bytes:
            return share
    return 1.0


def gpu_share(plan: SweepPlan, label: str, memory_gb: float) -> float:
    """The GPU share model ``label``'s trials get on a cluster with GPUs (``auto`` resolved)."""
    res = plan.model_resources[label]
    return auto_share(plan.models_table[label], worst_case(plan, label)[1], memory_gb) if res.gpu == AUTO \
        else float(res.gpu)


def gpu_shares(plan: SweepPlan, memory_gb: float) -> dict[str, float]:
    """Label → the GPU share each model's trials get on a cluster with GPUs (``auto`` resolved)."""
    return {label: gpu_share(plan, label, memory_gb) for label in plan.model_resources}


def resolve_resources(plan: SweepPlan, cluster_gpus: float, memory_gb: float | None = None) -> SweepPlan:
    """``plan`` with every ``gpu: auto`` made a number: a share on a cluster with GPUs, 0 on one without."""
    if memory_gb is None:
        memory_gb = gpu_memory_gb(plan.resources)[0]
    shares = gpu_shares(plan, memory_gb) if cluster_gpus > 0 else {}
    per_model = {label: res.replace(gpu=shares.get(label, 0.0) if res.gpu == AUTO else float(res.gpu))
                 for label, res in plan.model_resources.items()}
    default = plan.resources.gpu
    if default == AUTO:
        default = max(shares.values(), default=0.0)
    return plan.replace(resources=plan.resources.replace(gpu=float(default)), model_resources=per_model)


def hidden_gpus_env() -> dict:
    """Environment for Ray workers so that a trial given no GPU sees none (``CUDA_VISIBLE_DEVICES=""``)."""
    return dict(HIDE_GPUS_ENV)


def trial_device(gpu_ids: list, wants_gpu: bool):
    """The device for a trial given ``gpu_ids`` by Ray: its first visible GPU, else the CPU. A trial given no
    GPU hides every GPU before CUDA starts (in case the worker's environment did not)."""
    import torch

    if not wants_gpu or not gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return torch.device("cpu")
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def device_metrics(device) -> dict:
    """What a trial records per epoch about its device: name, GPU name and peak GPU memory since the last call
    (None on the CPU)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return {"device": str(device), "gpu_name": None, "peak_gpu_mem_gb": None}
    peak = torch.cuda.max_memory_allocated(device) / GiB
    torch.cuda.reset_peak_memory_stats(device)
    return {"device": str(device), "gpu_name": torch.cuda.get_device_name(device), "peak_gpu_mem_gb": round(peak, 3)}
