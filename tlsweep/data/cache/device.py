"""The device-fed input path: batches of a decoded-image cache entry (uint8 ``N×3×S×S``) travel to the training
device as uint8 (or the split stays there when it fits in a quarter of the trial's GPU share), and augmentation
and normalisation run there on the whole batch. The next batch is gathered on a thread and copied on a side CUDA
stream while the current one trains.

Ops with a batched form (``BATCHED``: flips, random-resized crop, colour jitter, grayscale) draw their random
parameters per image on the device, from the device's default generator (torch's global RNG on the CPU, the
CUDA generator on a GPU: both checkpointed with the trial), and apply them in one go; any other torchvision v2 op
runs per image (``unbatched`` names them: ``auto`` input keeps such policies on the CPU path). ``ToDtype`` and
``Normalize`` compute what torchvision's functions do, with constants built once per device, so a policy without
random ops gives exactly what the CPU path gives; the order of the batches is the one a ``DataLoader`` with the
same generator gives.

Nothing per batch waits for the GPU: the epoch's permutation is copied to the device once (pinned, asynchronous),
indices and labels stay there, and host batches are pinned before their asynchronous copy.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .decoded import CachedImages

GRAY = (0.2989, 0.587, 0.114)
_CONSTANTS: dict[tuple, torch.Tensor] = {}


def constant(values, like: torch.Tensor) -> torch.Tensor:
    """``values`` as a ``1×C×1×1`` tensor on ``like``'s device and dtype, built once per process."""
    key = (tuple(float(v) for v in values), like.device, like.dtype)
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(key[0], dtype=like.dtype).view(1, -1, 1, 1).to(like.device)
    return t


def _rand(n: int, device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """``n`` uniform draws in [low, high) made on ``device`` by its default generator."""
    return torch.rand(n, device=device) * (high - low) + low


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * constant(GRAY, x)).sum(1, keepdim=True)


def _normalize(op: v2.Normalize, x: torch.Tensor) -> torch.Tensor:
    """``TF.normalize`` without its per-call constants and its zero-std check (done once, in ``batched``)."""
    return x.sub(constant(op.mean, x)).div_(constant(op.std, x))


def _flip(dim: int):
    def apply(op, x):
        return _where(_rand(len(x), x.device) < op.p, x.flip(dim), x)
    return apply


def _resized_crop(op: v2.RandomResizedCrop, x: torch.Tensor) -> torch.Tensor:
    """A crop of random area and aspect ratio per image, resized to ``op.size``: one affine resample."""
    n = len(x)
    area = _rand(n, x.device, *op.scale)
    ratio = torch.exp(_rand(n, x.device, math.log(op.ratio[0]), math.log(op.ratio[1])))
    sw, sh = torch.sqrt(area * ratio).clamp(max=1), torch.sqrt(area / ratio).clamp(max=1)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = sw, sh
    theta[:, 0, 2] = (_rand(n, x.device) * 2 - 1) * (1 - sw)
    theta[:, 1, 2] = (_rand(n, x.device) * 2 - 1) * (1 - sh)
    h, w = op.size
    grid = nn.functional.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _jitter(op: v2.ColorJitter, x: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue factors drawn per image (in that order)."""
    n, view = len(x), (-1, 1, 1, 1)
    if op.brightness is not None:
        x = (x * _rand(n, x.device, *op.brightness).view(view)).clamp(0, 1)
    if op.contrast is not None:
        mean = _gray(x).mean((-3, -2, -1), keepdim=True)
        f = _rand(n, x.device, *op.contrast).view(view)
        x = (f * x + (1 - f) * mean).clamp(0, 1)
    if op.saturation is not None:
        f = _rand(n, x.device, *op.saturation).view(view)
        x = (f * x + (1 - f) * _gray(x)).clamp(0, 1)
    if op.hue is not None:
        from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

        hsv = _rgb_to_hsv(x)
        hue = (hsv[:, 0] + _rand(n, x.device, *op.hue).view(-1, 1, 1)) % 1.0
        x = _hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))
    return x


def _grayscale(op: v2.RandomGrayscale, x: torch.Tensor) -> torch.Tensor:
    return _where(_rand(len(x), x.device) < op.p, _gray(x).expand_as(x), x)


def _random_apply(op: v2.RandomApply, x: torch.Tensor) -> torch.Tensor:
    inner = [batched(t) for t in op.transforms]
    y = x
    for f in inner:
        y = f(y)
    return _where(_rand(len(x), x.device) < op.p, y, x)


BATCHED: dict[type, Callable] = {
    v2.RandomHorizontalFlip: _flip(-1),
    v2.RandomVerticalFlip: _flip(-2),
    v2.RandomResizedCrop: _resized_crop,
    v2.ColorJitter: _jitter,
    v2.RandomGrayscale: _grayscale,
    v2.RandomApply: _random_apply,
    v2.ToDtype: lambda op, x: x,  # the batch is float from the start
    v2.Normalize: _normalize,
}


def batched(op) -> Callable[[torch.Tensor], torch.Tensor]:
    """``op`` on a float batch in [0, 1]: its batched form, else torchvision's op image by image."""
    form = BATCHED.get(type(op))
    if isinstance(op, v2.Normalize) and any(float(s) == 0 for s in op.std):
        raise ValueError(f"std evaluated to zero in {op!r}, leading to division by zero")
    if form is not None:
        return lambda x: form(op, x)
    return lambda x: torch.stack([op(image).as_subclass(torch.Tensor) for image in x])


def unbatched(compose: v2.Compose) -> list[str]:
    """Names of the ops in ``compose`` (and in its ``RandomApply``) that would run image by image."""
    out = []
    for op in compose.transforms:
        if isinstance(op, v2.RandomApply):
            out += unbatched(v2.Compose(list(op.transforms)))
        elif type(op) not in BATCHED:
            out.append(type(op).__name__)
    return out


class BatchTransform:
    """A v2.Compose of ``tensor_steps`` applied to a uint8 batch on its device."""

    def __init__(self, compose: v2.Compose):
        self.steps = [batched(op) for op in compose.transforms]
        self.unbatched = unbatched(compose)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = TF.to_dtype(x, torch.float32, scale=True)
        for step in self.steps:
            x = step(x)
        return x


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    """The sample order of one epoch, drawn from ``generator`` exactly as a ``DataLoader`` (``RandomSampler`` or
    ``SequentialSampler``) draws it, so either gives the same batches and leaves the generators alike."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # a DataLoader's per-epoch seed
    if not shuffle:
        return torch.arange(n)
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)  # RandomSampler draws one more (empty) permutation at the end
    return order


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without waiting for it: through pinned memory, asynchronously, to a GPU."""
    if device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class DeviceBatches:
    """``(images, labels)`` batches of a ``CachedImages`` split, augmented on ``device``; a drop-in for the
    ``DataLoader`` the CPU path uses (same batch order for the same generator). The split stays on the GPU when
    ``resident`` says so, else (``None``) when its uint8 images fit in what is left of ``budget`` (a
    ``tlsweep.trial.budget.ResidentBudget``; without one it is streamed)."""

    def __init__(self, images: CachedImages, batch_size: int, shuffle: bool, device: torch.device,
                 generator: torch.Generator | None = None, resident: bool | None = None, budget=None):
        self.source, self.batch_size, self.shuffle = images, int(batch_size), shuffle
        self.device, self.generator = torch.device(device), generator
        self.transform = BatchTransform(images.transform)
        self.labels = torch.as_tensor(images.targets, dtype=torch.int64)
        self.cuda = self.device.type == "cuda"
        self.budget, self.nbytes = budget, int(images.images.nbytes)
        self.resident = self._fits() if resident is None else resident
        self._on_device = None

    def _fits(self) -> bool:
        return self.cuda and self.budget is not None and self.budget.take(self.nbytes)

    def release(self) -> None:
        """Free the resident copy and give its bytes back to the budget (the loader streams from then on)."""
        if self.resident and self.budget is not None:
            self.budget.give(self.nbytes)
        self.resident, self._on_device = False, None

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def _host_batches(self, order: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in order:
            rows, labels = torch.from_numpy(self.source.images[idx.numpy()]), self.labels[idx]
            yield (rows.pin_memory(), labels.pin_memory()) if self.cuda else (rows, labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(self.labels), self.shuffle, self.generator)
        if self.resident:
            if self._on_device is None:
                self._on_device, self._labels_on_device = self._upload(), to_device(self.labels, self.device)
            for idx in to_device(order, self.device).split(self.batch_size):
                yield self.transform(self._on_device[idx]), self._labels_on_device[idx]
            return
        host = self._host_ahead(list(order.split(self.batch_size)))
        if not self.cuda:
            for rows, labels in host:
                yield self.transform(rows), labels
            return
        yield from self._copied_ahead(host)

    def _upload(self, rows: int = 2048) -> torch.Tensor:
        """The whole split's uint8 images on the device, copied a slice at a time (no second copy in RAM)."""
        images = self.source.images
        out = torch.empty(images.shape, dtype=torch.uint8, device=self.device)
        for start in range(0, len(images), rows):
            out[start:start + rows] = torch.from_numpy(np.array(images[start:start + rows]))
        return out

    def _host_ahead(self, order: list[torch.Tensor], depth: int = 2) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Host batches gathered on a thread, ``depth`` ahead of the one training; its errors are raised here."""
        ready: queue.Queue = queue.Queue(maxsize=depth)
        stop, done = threading.Event(), object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def gather():
            try:
                for item in self._host_batches(order):
                    if not put(item):
                        return
                put(done)
            except BaseException as err:  # noqa: BLE001 - handed to the training thread
                put(err)

        thread = threading.Thread(target=gather, daemon=True, name="tlsweep-batches")
        thread.start()
        try:
            while (item := ready.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    def _copied_ahead(self, host) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Copy the next (pinned) batch on a side CUDA stream while the current one trains."""
        stream, current = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)

        def copy(item):
            if item is None:
                return None
            with torch.cuda.stream(stream):
                return item[0].to(self.device, non_blocking=True), item[1].to(self.device, non_blocking=True)

        ahead = copy(next(host, None))
        while ahead is not None:
            current.wait_stream(stream)
            rows, labels = ahead
            rows.record_stream(current)
            labels.record_stream(current)
            ahead = copy(next(host, None))
            yield self.transform(rows), labels
