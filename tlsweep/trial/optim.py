"""Optimizers and LR schedulers by name: the spec's allowed values and what ``train.Trial`` builds.

``OPTIMIZERS[name](params, config)`` → a torch optimizer; ``LR_SCHEDULERS[name]`` → ``LRScheduler(build, step)``
where ``build(optimizer, config, steps_per_epoch)`` returns a torch scheduler (or None) and ``step`` says when it
steps: ``epoch``, ``batch`` or ``metric`` (val loss). ``config`` is a ``tlsweep.config.plan.TrialConfig``.
torch is imported inside the builders, so listing names stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..config.registry import Registry

OPTIMIZERS: Registry[Callable] = Registry("optimizer")
LR_SCHEDULERS: Registry["LRScheduler"] = Registry("lr_scheduler")


@dataclass(frozen=True)
class LRScheduler:
    build: Callable  # (optimizer, config, steps_per_epoch) → torch scheduler or None
    step: Literal["epoch", "batch", "metric"] = "epoch"


@OPTIMIZERS.register("adam")
def _adam(params, c):
    import torch

    return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, c):
    import torch

    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params, c):
    import torch

    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def _plateau(opt, c, n):
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=c.plateau_factor,
                                                      patience=int(c.plateau_patience))


def _cosine(opt, c, n):
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs, eta_min=c.cosine_eta_min)


def _step(opt, c, n):
    import torch

    return torch.optim.lr_scheduler.StepLR(opt, step_size=int(c.step_size), gamma=c.step_gamma)


def _onecycle(opt, c, n):
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],  # one per group
                                               total_steps=max(1, c.epochs * n), pct_start=c.onecycle_pct_start)


LR_SCHEDULERS.register("plateau", LRScheduler(_plateau, "metric"))
LR_SCHEDULERS.register("cosine", LRScheduler(_cosine, "epoch"))
LR_SCHEDULERS.register("step", LRScheduler(_step, "epoch"))
LR_SCHEDULERS.register("onecycle", LRScheduler(_onecycle, "batch"))
LR_SCHEDULERS.register("none", LRScheduler(lambda opt, c, n: None, "epoch"))
