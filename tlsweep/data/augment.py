"""Augmentation policies written in the sweep file, built with torchvision.transforms.v2.

``data.augment`` is a named policy (``none``, ``flip``, ``basic``, ``rrc``: RandomResizedCrop + flip) or a list of
ops, each ``{OpName: {kwargs}}`` or a bare ``OpName``, e.g. ``[{ColorJitter: {brightness: 0.2}}, {RandomRot90:
{p: 0.5}}]``. Ops come from ``OPS`` (torchvision.transforms.v2 classes plus ``RandomRot90``); ``p`` on an op without its own ``p`` wraps
it in ``v2.RandomApply``. ``search.augment_strength`` (default 1) scales every op's magnitudes (``MAGNITUDES``):
0 turns colour/geometry changes off, 2 doubles them; flips and 90° rotations are not scaled.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..config.registry import Registry, unknown_value
from ..errors import TLSweepError

# named policy → steps(size): v2 transforms applied to uint8 image tensors before normalization
POLICIES: Registry[Callable[[int], list]] = Registry("augment policy")


@POLICIES.register("none")
def _none(size: int) -> list:
    return []


@POLICIES.register("flip")
def _flip(size: int) -> list:
    from torchvision.transforms import v2

    return [v2.RandomHorizontalFlip()]


@POLICIES.register("basic")
def _basic(size: int) -> list:
    from torchvision.transforms import v2

    return [v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True), v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.2, 0.2, 0.2)]


@POLICIES.register("rrc")
def _rrc(size: int) -> list:
    """The ImageNet training recipe (torchvision references, timm): random area 8–100 %, aspect 3/4–4/3, flip."""
    from torchvision.transforms import v2

    return [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]


def _times(v, s):
    return [x * s for x in v] if isinstance(v, (list, tuple)) else v * s


def _around_one(v, s):
    """Scalars are spreads (``0.2`` → ±20 %); ranges are factors around 1 (``[0.8, 1.2]``)."""
    return [1 + (x - 1) * s for x in v] if isinstance(v, (list, tuple)) else v * s


def _clip(x, s, cap):
    """``x * s`` kept within ±cap, unless ``x`` itself is out of range (then torchvision reports it)."""
    return x * s if abs(x) > cap else max(-cap, min(cap, x * s))


def _capped(cap):
    return lambda v, s: [_clip(x, s, cap) for x in v] if isinstance(v, (list, tuple)) else _clip(v, s, cap)


def _crop_scale(v, s):
    """RandomResizedCrop's area range: the lower bound moves away from 1 with strength."""
    lo, hi = v
    return [max(1e-3, min(hi, 1 - (1 - lo) * s)), hi]


def _magnitude(v, s):
    return int(round(min(30, v * s)))




# op name → {kwarg: how augment_strength scales it}
MAGNITUDES: dict[str, dict[str, Callable[[Any, float], Any]]] = {
    "ColorJitter": {"brightness": _around_one, "contrast": _around_one, "saturation": _around_one, "hue": _capped(0.5)},
    "RandomAffine": {"degrees": _times, "translate": _capped(1.0), "scale": _around_one, "shear": _times},
    "RandomRotation": {"degrees": _times},
    "ElasticTransform": {"alpha": _times},
    "RandomPerspective": {"distortion_scale": _capped(1.0)},
    "RandomResizedCrop": {"scale": _crop_scale},
    "RandAugment": {"magnitude": _magnitude},
    "GaussianBlur": {},
    "RandomHorizontalFlip": {},
    "RandomVerticalFlip": {},
    "RandomGrayscale": {},
    "RandomAutocontrast": {},
    "RandomEqualize": {},
    "TrivialAugmentWide": {},
    "RandomRot90": {},
}
OPS = tuple(MAGNITUDES)


class AugmentError(TLSweepError, ValueError):
    """A malformed augmentation policy, naming the op at fault and what is allowed."""


def _rot90_class():
    import torch
    from torchvision.transforms import v2

    class RandomRot90(v2.Transform):
        """Rotate by k·90° with k uniform in {0, 1, 2, 3} (Albumentations' RandomRotate90)."""

        def make_params(self, flat_inputs):
            return {"k": int(torch.randint(0, 4, ()).item())}

        def transform(self, inpt, params):
            if params["k"] == 0:
                return inpt
            return v2.functional.rotate(inpt, angle=90.0 * params["k"], expand=True)

    return RandomRot90


def op_class(name: str):
    from torchvision.transforms import v2

    return _rot90_class() if name == "RandomRot90" else getattr(v2, name)


def parse_policy(policy) -> list[tuple[str, dict]]:
    """``[(op name, kwargs)]`` of a list policy; structure only (no torch import)."""
    if not isinstance(policy, (list, tuple)):
        raise AugmentError(f"augment is one of {', '.join(POLICIES.names())} or a list of ops such as "
                           f"[{{ColorJitter: {{brightness: 0.2}}}}]; got {policy!r}")
    ops = []
    for i, item in enumerate(policy):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise AugmentError(f"augment[{i}]: an op is `OpName` or {{OpName: {{kwargs}}}}, got {item!r}")
        (name, kwargs), = item.items()
        if name not in MAGNITUDES:
            raise AugmentError(f"augment[{i}]: " + unknown_value("augmentation op", name, list(OPS)))
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise AugmentError(f"augment[{i}] {name}: keyword arguments must be a mapping, got {kwargs!r}")
        ops.append((name, dict(kwargs)))
    return ops


def build_op(name: str, kwargs: dict, strength: float = 1.0, size: int | None = None):
    """One v2 transform with magnitudes scaled by ``strength``; AugmentError names the op on bad kwargs."""
    from torchvision.transforms import v2

    cls = op_class(name)
    params = inspect.signature(cls).parameters
    kwargs = dict(kwargs)
    p = kwargs.pop("p", None) if "p" not in params else None
    if "size" in params and "size" not in kwargs and size is not None:
        kwargs["size"] = size
    for key, scale in MAGNITUDES[name].items():
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = scale(kwargs[key], strength)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        allowed = [k for k in params if k not in ("interpolation", "antialias")] + ([] if "p" in params else ["p"])
        raise AugmentError(f"{name}: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    try:
        op = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise AugmentError(f"{name}{_show(kwargs)}: {err}") from None
    if p is not None:
        if not 0 <= p <= 1:
            raise AugmentError(f"{name}: p must be within [0, 1], got {p!r}")
        op = v2.RandomApply([op], p=p)
    return op


def _show(kwargs: dict) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def build_policy(policy, strength: float = 1.0, size: int | None = None) -> list:
    """v2 transforms for a list policy (see the module docstring)."""
    return [build_op(name, kwargs, strength, size) for name, kwargs in parse_policy(policy)]


def check_policy(policy, strengths=(1.0,)) -> None:
    """Raise AugmentError if a named policy is unknown or a list policy does not build at every strength."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise AugmentError(f"unknown augment policy {policy!r}; allowed: {', '.join(POLICIES.names())} "
                               f"or a list of ops ({', '.join(OPS)})")
        return
    ops = parse_policy(policy)
    for s in strengths:
        for i, (name, kwargs) in enumerate(ops):
            try:
                build_op(name, kwargs, float(s), size=224)
            except AugmentError as err:
                at = f" at augment_strength {s:g}" if s != 1.0 else ""
                raise AugmentError(f"augment[{i}] {err}{at}") from None
