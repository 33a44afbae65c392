"""Grad-CAM (pytorch-grad-cam, imported lazily: ~11 s) and occlusion saliency for picked models.

Target layers come from the backbone registry (``cam_layer``, relative to ``model.backbone``); ViT/Swin token
outputs are reshaped to (B, C, H, W). An ensemble uses its first member's layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from ..models.transfer import TransferModel, resolve_path, stage_members


def _vit_reshape(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:  # the patch-embedding conv is already (B, C, H, W)
        return x
    side = int(math.isqrt(x.shape[1]))
    tokens = x[:, x.shape[1] - side * side:, :]  # drop the class (and register) tokens
    return tokens.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)


def _swin_reshape(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)  # torchvision Swin keeps (B, H, W, C)


RESHAPES = {None: None, "vit": _vit_reshape, "swin": _swin_reshape}


def cam_member(model: nn.Module) -> TransferModel:
    """The backbone model whose layers Grad-CAM looks at (an ensemble's first member)."""
    return model if isinstance(model, TransferModel) else model.members[0]


MIN_CAM_SIDE = 7  # a coarser map paints every pixel of the image the same colour


@dataclass(frozen=True)
class CamLayer:
    """The layer Grad-CAM looks at, its dotted name in the backbone and its feature-map side at the image size."""

    module: nn.Module
    name: str
    side: int | None
    reshape: str | None


@torch.no_grad()
def feature_sides(member: TransferModel, modules: dict[str, nn.Module], image_size: int) -> dict[str, int]:
    """Smallest spatial side of each module's output, in forward order, from one pass at ``image_size``."""
    sides: dict[str, int] = {}
    reshape = RESHAPES[member.entry.reshape]

    def hook(name):
        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() in (3, 4):
                out = reshape(output) if reshape else output
                if out.dim() == 4:
                    sides.setdefault(name, int(min(out.shape[-2:])))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was_training = member.training
    try:
        member.eval()
        member(torch.zeros(1, 3, image_size, image_size))
    finally:
        member.train(was_training)
        for h in handles:
            h.remove()
    return sides


def cam_layer(model: nn.Module, image_size: int | None = None) -> CamLayer:
    """The deepest backbone stage whose feature map is at least ``MIN_CAM_SIDE`` pixels a side at
    ``image_size`` (the registry's ``cam_layer`` when that is, or when no stage is, or without a size)."""
    member = cam_member(model)
    entry = member.entry
    default = CamLayer(resolve_path(member.backbone, entry.cam_layer), entry.cam_layer, None, entry.reshape)
    if image_size is None:
        return default
    names = {id(m): n for n, m in member.backbone.named_modules()}
    candidates = {names[id(m)]: m for stage in entry.stages for m in stage_members(member.backbone, stage)
                  if isinstance(m, nn.Module) and id(m) in names}
    candidates[entry.cam_layer] = default.module
    sides = feature_sides(member, candidates, image_size)
    if sides.get(entry.cam_layer, 0) >= MIN_CAM_SIDE:
        return CamLayer(default.module, entry.cam_layer, sides[entry.cam_layer], entry.reshape)
    wide = [n for n, side in sides.items() if side >= MIN_CAM_SIDE]
    if not wide:
        return CamLayer(default.module, entry.cam_layer, sides.get(entry.cam_layer), entry.reshape)
    return CamLayer(candidates[wide[-1]], wide[-1], sides[wide[-1]], entry.reshape)


def depth_layers(model: nn.Module, count: int = 4) -> list[tuple[str, nn.Module]]:
    """Up to ``count`` stages spread from shallow to deep; each stage's last module."""
    member = cam_member(model)
    stages = list(member.entry.stages)
    picks = sorted({round(i * (len(stages) - 1) / max(count - 1, 1)) for i in range(count)})
    layers = []
    for i in picks:
        modules = [m for m in stage_members(member.backbone, stages[i]) if isinstance(m, nn.Module)]
        if modules:
            layers.append((stages[i], modules[-1]))
    return layers


def grad_cam(model: nn.Module, images: torch.Tensor, layer: nn.Module, reshape: str | None,
             classes: list[int] | None = None) -> np.ndarray:
    """(B, H, W) CAMs in [0, 1] for ``classes`` (default: the predicted class)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    for p in model.parameters():  # frozen stages still need gradients to flow for CAM
        p.requires_grad_(True)
    targets = [ClassifierOutputTarget(int(c)) for c in classes] if classes is not None else None
    with GradCAM(model=model, target_layers=[layer], reshape_transform=RESHAPES[reshape]) as cam:
        return cam(input_tensor=images, targets=targets)


def overlay(image: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """A normalized (3, H, W) image with a CAM mask drawn over it (uint8 RGB)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = denormalize(image).permute(1, 2, 0).numpy().astype(np.float32)
    return show_cam_on_image(rgb, mask, use_rgb=True)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    return denormalize(image).permute(1, 2, 0).numpy()


@torch.no_grad()
def occlusion(model: nn.Module, image: torch.Tensor, label: int, batch: int = 64) -> tuple[np.ndarray, int, int]:
    """Probability of the true class with a black patch at each position (patch 30, stride 20 at 224 px,
    scaled to the image size). Returns the (rows, cols) map, patch and stride."""
    size = image.shape[-1]
    patch = max(2, round(size * 30 / 224))
    stride = max(1, round(size * 20 / 224))
    black = ((0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)
    positions = [(y, x) for y in range(0, size - patch + 1, stride) for x in range(0, size - patch + 1, stride)]
    occluded = image.unsqueeze(0).repeat(len(positions), 1, 1, 1)
    for k, (y, x) in enumerate(positions):
        occluded[k, :, y:y + patch, x:x + patch] = black
    model.eval()
    probs = torch.cat([model(occluded[i:i + batch]).softmax(1)[:, label] for i in range(0, len(occluded), batch)])
    side = len(range(0, size - patch + 1, stride))
    return probs.view(side, side).numpy(), patch, stride
