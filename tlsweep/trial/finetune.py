"""Fine-tuning recipes: discriminative (layer-wise decayed) learning rates and gradual unfreezing.

A model's parameters fall into units: each registry stage of each backbone (an ensemble's members each have
their own), the backbone parameters outside the stages, and the rest (head, fusion layers). The optimizer gets one
parameter group per trainable unit: the head at ``lr × head_lr_mult``, a stage k stages before the head at
``lr × lr_decay^k`` (ULMFiT; BEiT's layer-wise decay). ``unfreeze_every: k`` starts from ``freeze_depth`` and thaws
one more stage of each backbone every k epochs, deepest first, adding its group at the LR the schedule gives it
then. Without any of the three, the optimizer keeps one group, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..models.ensemble import Ensemble
from ..models.transfer import TransferModel, stage_members

HEAD = "head"


@dataclass(frozen=True)
class Recipe:
    lr: float
    lr_decay: float = 1.0
    head_lr_mult: float = 1.0
    unfreeze_every: int | None = None

    @classmethod
    def from_config(cls, config) -> Recipe:
        """From a ``tlsweep.config.plan.TrialConfig``."""
        every = config.unfreeze_every
        return cls(float(config.lr), float(config.lr_decay), float(config.head_lr_mult), int(every) if every else None)

    @property
    def single_group(self) -> bool:
        return self.lr_decay == 1.0 and self.head_lr_mult == 1.0 and self.unfreeze_every is None

    def stage_lr(self, depth: int) -> float:
        """The LR of a stage ``depth`` stages before the head (1 = the last stage)."""
        return self.lr * self.lr_decay ** depth


BACKBONES: dict[type, Callable[[nn.Module], list[TransferModel]]] = {
    TransferModel: lambda m: [m], Ensemble: lambda m: list(m.members)}


def backbones(model: nn.Module) -> list[TransferModel]:
    """The model's backbone models (one, or an ensemble's members)."""
    return BACKBONES[type(model)](model)


def _params(members) -> list[nn.Parameter]:
    out = []
    for m in members:
        out += [m] if isinstance(m, nn.Parameter) else list(m.parameters())
    return out


@dataclass
class Unit:
    name: str
    params: list[nn.Parameter]
    lr: float


def units(model: nn.Module, recipe: Recipe) -> Iterator[Unit]:
    """The head first, then each backbone's stages deepest first, then its parameters outside the stages."""
    members = backbones(model)
    in_backbones = {id(p) for m in members for p in m.backbone.parameters()}
    yield Unit(HEAD, [p for p in model.parameters() if id(p) not in in_backbones], recipe.lr * recipe.head_lr_mult)
    for i, member in enumerate(members):
        prefix = f"members.{i}." if len(members) > 1 else ""
        n = member.entry.num_stages
        staged = set()
        for j in reversed(range(n)):
            params = _params(stage_members(member.backbone, member.entry.stages[j]))
            staged.update(map(id, params))
            yield Unit(f"{prefix}{member.entry.stages[j]}", params, recipe.stage_lr(n - j))
        other = [p for p in member.backbone.parameters() if id(p) not in staged]
        yield Unit(f"{prefix}(outside stages)", other, recipe.stage_lr(n))


def param_groups(model: nn.Module, recipe: Recipe, skip: set[int] | None = None) -> list[dict]:
    """Optimizer groups of the trainable parameters not in ``skip`` (ids); each keeps its ``name`` and
    ``base_lr`` (its LR before any schedule)."""
    skip = set(skip or ())
    if recipe.single_group and not skip:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": recipe.lr, "base_lr": recipe.lr, "name": "all"}]
    groups = []
    for unit in units(model, recipe):
        params = [p for p in unit.params if p.requires_grad and id(p) not in skip]
        skip.update(map(id, params))
        if params:
            groups.append({"params": params, "lr": unit.lr, "base_lr": unit.lr, "name": unit.name})
    return groups


def frozen_target(initial: int, epoch: int, every: int | None) -> int:
    """Frozen stages during 0-based ``epoch`` when ``initial`` were frozen at the start."""
    return initial if not every else max(0, initial - epoch // every)


def frozen_counts(model: nn.Module) -> list[int]:
    return [m.frozen_stages for m in backbones(model)]


def thaw(model: nn.Module, initial: list[int], epoch: int, recipe: Recipe, optimizer: torch.optim.Optimizer,
         scheduler=None) -> list[dict]:
    """Unfreeze the stages that ``recipe.unfreeze_every`` thaws by ``epoch`` and add their groups (returned)."""
    members = backbones(model)
    targets = [frozen_target(n, epoch, recipe.unfreeze_every) for n in initial]
    if all(m.frozen_stages <= t for m, t in zip(members, targets)):
        return []
    for member, target in zip(members, targets):
        if member.frozen_stages > target:
            member.set_frozen(target)
    present = {id(p) for g in optimizer.param_groups for p in g["params"]}
    added = param_groups(model, recipe, present)
    for group in added:
        add_group(optimizer, scheduler, group)
    return added


def _ratio(ref: dict) -> float:
    return ref["lr"] / ref["base_lr"] if ref.get("base_lr") else 1.0


def add_group(optimizer: torch.optim.Optimizer, scheduler, group: dict) -> None:
    """``optimizer.add_param_group`` with the LR scheduler extended to the new group, which starts at the LR
    the schedule gives its base LR now (closed form where the scheduler has one; else the head's ratio)."""
    from torch.optim import lr_scheduler as S

    ref, base = optimizer.param_groups[0], group["lr"]
    if isinstance(scheduler, S.OneCycleLR):  # every per-group value of OneCycle scales with max_lr
        scale = base / ref["max_lr"]
        group.update(initial_lr=ref["initial_lr"] * scale, max_lr=base, min_lr=ref["min_lr"] * scale,
                     lr=ref["lr"] * scale)
        for key in ("max_momentum", "base_momentum", "betas", "momentum"):
            if key in ref:
                group[key] = ref[key]
    elif isinstance(scheduler, S.ReduceLROnPlateau):
        group["lr"] = base * _ratio(ref)
        scheduler.min_lrs.append(scheduler.default_min_lr or 0.0)
    elif isinstance(scheduler, S.LRScheduler):
        group["initial_lr"] = base
        scheduler.base_lrs.append(base)
        closed = getattr(scheduler, "_get_closed_form_lr", None)
        group["lr"] = closed()[-1] if closed else base * _ratio(ref)
    optimizer.add_param_group(group)
    if isinstance(scheduler, S.LRScheduler) and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr.append(group["lr"])
