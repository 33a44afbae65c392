"""Fast paths switched by the sweep's ``performance`` section: mixed precision (autocast bf16/fp16, with a
GradScaler for fp16), channels_last, pinned memory and optional ``torch.compile``. On CUDA, ``cuda_tuning`` (on
by default) sets ``cudnn.benchmark`` and TF32 matmuls for the process and makes ``channels_last: auto`` on;
``cuda_tuning: false`` sets both off (full fp32, no autotuned kernels: what a bitwise resume check wants)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..config.sections import PerformanceConfig

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class FastPath:
    def __init__(self, p: PerformanceConfig, device: torch.device):
        self.device = torch.device(device)
        self.precision = p.precision
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        self.dtype = PRECISIONS[self.precision]
        cuda = self.device.type == "cuda"
        self.cuda_tuning = bool(p.cuda_tuning) and cuda
        self.channels_last = self.cuda_tuning if p.channels_last in ("auto", None) else bool(p.channels_last)
        if cuda:
            tune_cuda(self.cuda_tuning)
        self.compile = bool(p.compile)
        pin = p.pin_memory
        self.pin_memory = self.device.type == "cuda" if pin in ("auto", None) else bool(pin)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def compiled(self, forward: nn.Module):
        """The module to call in the training loop; the uncompiled one keeps plain state-dict keys."""
        return torch.compile(forward) if self.compile else forward

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def tune_cuda(on: bool) -> None:
    """cudnn.benchmark and TF32 matmuls (cuDNN convolutions use TF32 by default), for this process."""
    torch.backends.cudnn.benchmark = on
    torch.set_float32_matmul_precision("high" if on else "highest")
