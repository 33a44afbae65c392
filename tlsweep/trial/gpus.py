"""GPU facts in one place: the GPU share a trial gets (``resources.gpu: auto``), an estimate of the GPU memory a
trial needs, the device a trial trains on and what it records about it, and hiding GPUs from trials given none.

Memory estimate (bytes, ``estimate_parts``) = parameters × 4 (fp32 weights) + trainable parameters × 4 × (1
gradient + optimizer buffers: 2 for Adam/AdamW, 1 for SGD, + 1 foreach temporary) + parameters × 2 under bf16/fp16
(autocast's weight copies) + batch × the activations autograd saves for the backward pass (counted by a
training-mode forward on the meta device, functional ops included: 4 bytes fp32, 2 bf16/fp16 except the outputs
of ops autocast keeps in fp32, such as LayerNorm and softmax) + the largest layer's input and output + 256 MiB of
workspace, + 10 % for the caching allocator's reserve, + 512 MiB of CUDA context. The parts a trial reaches are
sized at the least-frozen depth it thaws to (``unfreeze_every``) and the largest size of its schedule. Attention
is counted as the math path saves it (the probabilities); flash attention on a GPU saves less.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..config.plan import ModelConfig, Resources, SweepPlan

ASSUMED_GPU_MEMORY_GB = 16.0  # the memory check's GPU when neither this machine nor `resources.gpu_memory_gb` says
SHARES = (0.25, 0.5, 1.0)  # the shares `auto` chooses from
HIDE_GPUS_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}  # Ray 2.60: CUDA_VISIBLE_DEVICES="" for gpu-0 workers
WORKSPACE_BYTES = 256 * 2**20
CUDA_CONTEXT_BYTES = 512 * 2**20  # the CUDA context and its kernels, outside torch's allocator
ALLOCATOR_RESERVE = 0.10  # of the rest: the caching allocator's partly used blocks
OPTIMIZER_BUFFERS = {"adam": 2, "adamw": 2, "sgd": 1}
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GiB = 2**30
AUTO = "auto"
ALLOW_CPU_FALLBACK_ENV = "TLSWEEP_ALLOW_CPU_FALLBACK"


def registry_share(model: ModelConfig) -> float:
    """The backbone's default GPU share (the largest of an ensemble's members)."""
    from ..models.backbones import get_backbone

    return max(get_backbone(n).gpu_share for n in model.backbones)


FP32_OPS = frozenset({"native_layer_norm", "native_group_norm", "_softmax", "_safe_softmax", "_log_softmax",
                      "layer_norm", "group_norm", "softmax", "log_softmax"})  # fp32 outputs under autocast


def _counts(model_cfg: ModelConfig, image_size: int, freeze) -> tuple[int, int, int, int, int]:
    """(parameters, trainable parameters, activation elements per image kept in fp32 under autocast, the other
    activation elements per image, the largest single output) of a model."""
    params, trainable, saved, largest = saved_activations(model_cfg, image_size, freeze)
    fp32 = sum(n for op, n in saved.items() if op in FP32_OPS)
    return params, trainable, fp32, sum(saved.values()) - fp32, largest


@lru_cache(maxsize=256)
def saved_activations(model_cfg: ModelConfig, image_size: int, freeze) -> tuple[int, int, dict[str, int], int]:
    """(parameters, trainable parameters, {aten op: elements per image it produced that autograd saves for the
    backward pass}, the largest single output) of a model, from one training-mode forward on the meta device:
    functional ops and non-leaf modules such as ``nn.MultiheadAttention`` are seen; each storage counts once,
    parameters and buffers not."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from ..models import build_model

    with torch.device("meta"):
        model = build_model(model_cfg, 10, freeze)

    def key(t):
        return t.untyped_storage()._cdata

    state = {key(t) for t in [*model.parameters(), *model.buffers()]}
    producer: dict[int, str] = {}
    largest = [0]

    class Producers(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {key(a) for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)}
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and key(t) not in inputs:  # a new storage (not a view, not in place)
                    producer[key(t)] = func.overloadpacket.__name__
                    largest[0] = max(largest[0], t.numel())
            return out

    saved: dict[int, int] = {}
    alive = []  # keeps storages alive, so their keys are not reused

    def pack(t):
        alive.append(t)
        if key(t) not in state:
            saved.setdefault(key(t), t.untyped_storage().nbytes() // max(1, t.element_size()))
        return t

    batch = 2  # training-mode BatchNorm wants more than one value per channel
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), Producers():
        model.train()(torch.empty(batch, 3, image_size, image_size, device="meta"))
    by_op: dict[str, int] = {}
    for k, n in saved.items():
        op = producer.get(k, "input")
        by_op[op] = by_op.get(op, 0) + n // batch
    largest[0] //= batch
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, trainable, by_op, largest[0]


def estimate_parts(model: ModelConfig, batch_size: int, image_size: int, precision: str = "fp32",
                   optimizer: str = "adam", freeze=0.0) -> dict[str, int]:
    """The estimate's parts in bytes (see the module docstring)."""
    params, trainable, fp32, other, largest = _counts(model.replace(weights="none"), int(image_size), freeze)
    low = PRECISION_BYTES.get(precision, 4)
    parts = {
        "weights": params * 4,
        "gradients_and_optimizer": trainable * 4 * (1 + OPTIMIZER_BUFFERS.get(optimizer, 2)),
        "foreach_temporaries": trainable * 4,  # one parameter-sized list per foreach optimizer op
        "autocast_weight_copies": params * low if low < 4 else 0,
        "activations": batch_size * (fp32 * 4 + other * low),
        "largest_output": 2 * batch_size * largest * low,  # a layer's input and output in flight
        "workspace": WORKSPACE_BYTES,
    }
    parts["allocator_reserve"] = int(ALLOCATOR_RESERVE * sum(parts.values()))
    parts["cuda_context"] = CUDA_CONTEXT_BYTES
    return parts


def estimate_bytes(model: ModelConfig, batch_size: int, image_size: int, precision: str = "fp32",
                   optimizer: str = "adam", freeze=0.0) -> int:
    """GPU memory one training step needs (see the module docstring)."""
    return int(sum(estimate_parts(model, batch_size, image_size, precision, optimizer, freeze).values()))


def least_frozen(model: ModelConfig, freezes: list, unfreeze_every: list, epochs: int):
    """The freeze depth (as a fraction of the stages) of the least-frozen model a trial reaches: the least frozen
    of ``freezes``, thawed by the smallest ``unfreeze_every`` (None: never) up to its last epoch."""
    from ..models.backbones import get_backbone
    from ..models.transfer import frozen_stage_count

    stages = get_backbone(model.backbones[0]).num_stages

    def frozen(v):
        try:
            return frozen_stage_count(v, stages)
        except ValueError:
            return None  # an invalid depth: preflight's freeze-depth check reports it

    counts = [c for c in map(frozen, freezes) if c is not None]
    count = min(counts) if counts else 0
    every = [int(e) for e in unfreeze_every if isinstance(e, (int, float)) and e >= 1]
    if every:
        count = max(0, count - (int(epochs) - 1) // min(every))
    return count / stages


def worst_case(plan: SweepPlan, label: str) -> tuple[int, int]:
    """(largest batch size, estimated bytes at that batch) over a model's searched values: the least frozen
    depth a trial reaches (freeze depth thawed by ``unfreeze_every``), the largest image size of the schedule,
    the optimizer with the most state."""
    model = plan.models_table[label]
    search, data = plan.search, plan.data
    batch = int(max(b for b in search.values_of("batch_size") if isinstance(b, (int, float))))
    freeze = least_frozen(model, search.values_of("freeze_depth"),
                          search.values_of("unfreeze_every"), plan.epochs)
    size = max([data.image_size] + [int(p.size) for p in data.image_size_schedule])
    optimizer = max(search.values_of("optimizer"), key=lambda o: OPTIMIZER_BUFFERS.get(o, 2))
    return batch, estimate_bytes(model, batch, size, plan.performance.precision, optimizer, freeze)


def trial_estimate(config) -> tuple[int, dict]:
    """(estimated bytes, what it assumed) for one trial (a ``TrialConfig``): its batch size, precision and
    optimizer, the largest image size it trains at and the least-frozen depth it reaches."""
    data = config.data
    size = max([data.image_size] + [int(p.size) for p in data.image_size_schedule])
    freeze = least_frozen(config.model, [config.freeze_depth], [config.unfreeze_every], config.epochs)
    precision = config.performance.precision
    what = {"image_size": size, "precision": precision, "optimizer": config.optimizer, "frozen_fraction": freeze}
    return estimate_bytes(config.model, int(config.batch_size), size, precision, config.optimizer, freeze), what


def local_gpu_memory_gb() -> float | None:
    """Total memory of this machine's first visible GPU, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GiB


def gpu_memory_gb(resources: Resources, cluster_gb: float | None = None) -> tuple[float, str]:
    """(GiB, where the figure comes from): ``resources.gpu_memory_gb``, else the cluster's GPUs (``cluster_gb``,
    the smallest of them: ``tlsweep.sweep.cluster.cluster_gpu_memory_gb``), else this machine's GPU, else assumed."""
    if resources.gpu_memory_gb:
        return float(resources.gpu_memory_gb), "resources.gpu_memory_gb"
    if cluster_gb:
        return float(cluster_gb), "the cluster's GPUs"
    local = local_gpu_memory_gb()
    if local:
        return local, "this machine's GPU"
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


def resolve_resources(plan: SweepPlan, cluster_gpus: float, memory_gb: float | None = None,
                      cluster_gb: float | None = None) -> SweepPlan:
    """``plan`` with every ``gpu: auto`` made a number: a share on a cluster with GPUs, 0 on one without."""
    if memory_gb is None:
        memory_gb = gpu_memory_gb(plan.resources, cluster_gb)[0]
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
    """The device for a trial given ``gpu_ids`` by Ray: its first visible GPU. A trial given no GPU hides every
    GPU before CUDA starts (in case the worker's environment did not) and trains on the CPU. A trial given a GPU
    that torch cannot use is an error, not a silent CPU run (``TLSWEEP_ALLOW_CPU_FALLBACK=1``: the CPU, for
    tests with Ray's fake GPUs)."""
    import torch

    if not wants_gpu or not gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if os.environ.get(ALLOW_CPU_FALLBACK_ENV) == "1":
        return torch.device("cpu")
    raise RuntimeError(
        f"Ray gave this trial GPU {','.join(map(str, gpu_ids))} but torch {torch.__version__} sees no CUDA device "
        f"(CUDA build: {torch.version.cuda or 'none'}, CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); install a CUDA build of torch on the node, or set "
        f"resources.gpu: 0 to train on CPUs")


def device_metrics(device) -> dict:
    """What a trial records per epoch about its device: name, GPU name and peak GPU memory since the last call
    (None on the CPU)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return {"device": str(device), "gpu_name": None, "peak_gpu_mem_gb": None, "peak_gpu_reserved_gb": None}
    peak = torch.cuda.max_memory_allocated(device) / GiB
    reserved = torch.cuda.max_memory_reserved(device) / GiB
    torch.cuda.reset_peak_memory_stats(device)
    return {"device": str(device), "gpu_name": torch.cuda.get_device_name(device), "peak_gpu_mem_gb": round(peak, 3),
            "peak_gpu_reserved_gb": round(reserved, 3)}
