"""Batch-1 inference latency of a model, measured once per (model config, input, device) and cached on the node.

The cache is a small JSON file per key under the node-local cache root (``tlsweep.data.cache.store.cache_root``), so
every trial of a model config after the first reads the number instead of measuring again, across trials, worker
processes and sweeps. The key names the device (GPU model, or CPU model and thread count), the model config
(backbone, head, weights), the class count, image size and the precision/channels_last fast paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from ..config.sections import DataConfig, ModelConfig, PerformanceConfig

REPEATS = 20


def device_name(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{device.type}:{cpu}:{torch.get_num_threads()} threads"


@torch.no_grad()
def measure(model: nn.Module, image_size: int, device: torch.device | str = "cpu", repeats: int = REPEATS,
            autocast=None, channels_last: bool = False) -> float:
    """Best-of-``repeats`` batch-1 forward time in ms after two warm-up calls (eval mode; the model's mode and
    the global RNG are left as they were)."""
    device = torch.device(device)
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    try:
        with autocast() if autocast is not None else contextlib.nullcontext():
            for i in range(repeats + 2):
                sync()
                start = time.perf_counter()
                model(x)
                sync()
                if i >= 2:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000 * min(times)


def cache_file(model_config: ModelConfig, num_classes: int, image_size: int, device: torch.device,
               performance: PerformanceConfig, data: DataConfig | None = None) -> Path:
    from ..data.cache.store import cache_root, content_key

    perf = {"precision": performance.precision, "channels_last": performance.channels_last,
            "cuda_tuning": performance.cuda_tuning}
    key = content_key("latency", model_config.to_dict(), num_classes, image_size, device_name(device), perf)
    return cache_root(data) / "latency" / f"{key}.json"


def cached_latency(model: nn.Module, model_config: ModelConfig, num_classes: int, image_size: int,
                   device: torch.device, performance: PerformanceConfig = PerformanceConfig(),
                   data: DataConfig | None = None, measure_fn=measure) -> float:
    """The cached latency of this model config on this device, measuring (and storing) it on a miss."""
    from filelock import FileLock

    path = cache_file(model_config, num_classes, image_size, device, performance, data)
    if path.is_file():
        return float(json.loads(path.read_text())["latency_ms"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # trials starting together on one node measure once
        if path.is_file():
            return float(json.loads(path.read_text())["latency_ms"])
        from .fastpath import FastPath

        fast = FastPath(performance, device)
        value = measure_fn(model, image_size, device, autocast=fast.autocast, channels_last=fast.channels_last)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"latency_ms": value, "device": device_name(device), "model": model_config.to_dict(),
                                   "image_size": image_size, "measured_at": time.time()}, default=str))
        os.replace(tmp, path)
    return value
