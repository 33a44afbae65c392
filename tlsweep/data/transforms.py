"""torchvision.transforms.v2 pipelines: PIL image → normalized float tensor."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUGMENTATIONS = {
    "none": lambda size: [],
    "flip": lambda size: [v2.RandomHorizontalFlip()],
    "basic": lambda size: [v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
                           v2.RandomHorizontalFlip(), v2.ColorJitter(0.2, 0.2, 0.2)],
}


def decode_steps(image_size: int) -> list:
    """PIL image → resized uint8 image tensor (what the decoded-image cache stores)."""
    return [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]


def augment_steps(augment: str | list, image_size: int, strength: float = 1.0) -> list:
    """A named policy, or a list policy scaled by ``strength`` (see ``tlsweep.data.augment``)."""
    if isinstance(augment, str):
        return AUGMENTATIONS[augment](image_size)
    from .augment import build_policy

    return build_policy(augment, strength, image_size)


def tensor_steps(image_size: int, augment: str | list = "none", train: bool = False, strength: float = 1.0) -> list:
    """uint8 image tensor → (train only) augmented, then normalized float tensor."""
    steps = augment_steps(augment, image_size, strength) if train else []
    return steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def build_transform(image_size: int, augment: str | list = "none", train: bool = False,
                    strength: float = 1.0) -> v2.Compose:
    return v2.Compose(decode_steps(image_size) + tensor_steps(image_size, augment, train, strength))


def train_size(data: dict, epoch: int) -> int:
    """The training image size at a 0-based epoch: ``data.image_size_schedule`` phases in order (a phase
    without ``epochs`` lasts to the end), then ``data.image_size`` (also the validation/test size)."""
    end = 0
    for phase in data.get("image_size_schedule") or ():
        if phase.get("epochs") is None:
            return int(phase["size"])
        end += int(phase["epochs"])
        if epoch < end:
            return int(phase["size"])
    return int(data.get("image_size", 224))


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo ``Normalize`` for display: (…,3,H,W) float in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)
