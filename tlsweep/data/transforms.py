"""torchvision.transforms.v2 pipelines: PIL image → normalized float tensor.

``pre`` (a ``tlsweep.models.Preprocessing``: mean, std, interpolation of the backbone's weights) defaults to
ImageNet statistics with bilinear resizing.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..models.backbones import IMAGENET, IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: F401 (re-exported)


class TransformedDataset(Dataset):
    def __init__(self, base: Dataset, transform):
        self.base = base
        self.transform = transform
        self.targets = getattr(base, "targets", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def decode_steps(image_size: int, pre: Preprocessing | None = None) -> list:
    """PIL image → resized uint8 image tensor (what the decoded-image cache stores): squashed to S×S, or with a
    ``resize_ratio`` the shorter side resized to S × ratio, then centre-cropped to S×S."""
    pre = pre or IMAGENET
    mode = pre.interpolation
    kw = {} if mode == IMAGENET.interpolation else {"interpolation": v2.InterpolationMode(mode)}
    if pre.resize_ratio is None:
        return [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True, **kw)]  # keeps cache keys
    return [v2.ToImage(), v2.Resize(round(image_size * pre.resize_ratio), antialias=True, **kw),
            v2.CenterCrop(image_size)]


def augment_steps(augment: str | list | tuple, image_size: int, strength: float = 1.0) -> list:
    """A named policy, or a list policy scaled by ``strength`` (see ``tlsweep.data.augment``)."""
    from .augment import POLICIES, build_policy

    if isinstance(augment, str):
        return POLICIES[augment](image_size)
    return build_policy(augment, strength, image_size)


def tensor_steps(image_size: int, augment: str | list | tuple = "none", train: bool = False, strength: float = 1.0,
                 pre: Preprocessing | None = None) -> list:
    """uint8 image tensor → (train only) augmented, then normalized float tensor."""
    pre = pre or IMAGENET
    steps = augment_steps(augment, image_size, strength) if train else []
    return steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]


def build_transform(image_size: int, augment: str | list | tuple = "none", train: bool = False,
                    strength: float = 1.0, pre: Preprocessing | None = None) -> v2.Compose:
    return v2.Compose(decode_steps(image_size, pre) + tensor_steps(image_size, augment, train, strength, pre))


def denormalize(x: torch.Tensor, pre: Preprocessing | None = None) -> torch.Tensor:
    """Undo ``Normalize`` for display: (…,3,H,W) float in [0, 1]."""
    pre = pre or IMAGENET
    mean = torch.tensor(pre.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)
