"""Figures built on Grad-CAM: images × models grid, depths of the best model, galleries, occlusion."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import cam
from .plots import save


def _panel(ax, image, title: str = "", fontsize: int = 7) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def cam_grid(models: dict[str, torch.nn.Module], images: torch.Tensor, labels: list[int], classes: list[str],
             path: Path) -> Path:
    """Rows = the same test images for every model; column 0 the original, then one CAM column per model.
    Writes ``<path>.json`` with the panel layout."""
    names = list(models)
    n = len(images)
    layers = {name: cam.cam_layer(models[name], images.shape[-1]) for name in names}
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.6 * n), squeeze=False)
    for r in range(n):
        _panel(axes[r, 0], cam.to_rgb(images[r]), f"{classes[labels[r]]}" if r else f"original\n{classes[labels[r]]}")
    for c, name in enumerate(names, start=1):
        model, layer = models[name], layers[name]
        masks = cam.grad_cam(model, images, layer.module, layer.reshape)
        with torch.no_grad():
            preds = model(images).argmax(1).tolist()
        for r in range(n):
            head = f"{name}\n{layer_text(layer)}\n" if r == 0 else ""
            _panel(axes[r, c], cam.overlay(images[r], masks[r]), f"{head}pred {classes[preds[r]]}", 6)
    save(fig, path)
    path.with_suffix(".json").write_text(json.dumps({
        "rows": n, "columns": ["original", *names], "labels": [classes[y] for y in labels],
        "layers": {name: {"name": layer.name, "side": layer.side} for name, layer in layers.items()}}))
    return path


def cam_depths(model: torch.nn.Module, name: str, images: torch.Tensor, path: Path) -> Path:
    """CAMs at several stages (shallow → deep) of one model."""
    layers = cam.depth_layers(model)
    reshape = cam.cam_member(model).entry.reshape
    fig, axes = plt.subplots(len(images), len(layers) + 1, figsize=(1.6 * (len(layers) + 1), 1.6 * len(images)),
                             squeeze=False)
    for r in range(len(images)):
        _panel(axes[r, 0], cam.to_rgb(images[r]), "original" if r == 0 else "")
    for c, (stage, layer) in enumerate(layers, start=1):
        masks = cam.grad_cam(model, images, layer, reshape)
        for r in range(len(images)):
            _panel(axes[r, c], cam.overlay(images[r], masks[r]), stage if r == 0 else "", 6)
    fig.suptitle(f"Grad-CAM at {len(layers)} depths of {name}", fontsize=8)
    return save(fig, path)


def gallery(model: torch.nn.Module, images: torch.Tensor, labels: list[int], preds: list[int],
            classes: list[str], title: str, path: Path) -> Path:
    """Images with their CAM (for the predicted class) and predicted/true labels."""
    layer = cam.cam_layer(model, images.shape[-1])
    masks = cam.grad_cam(model, images, layer.module, layer.reshape)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        _panel(axes[0, i], cam.to_rgb(images[i]), f"true {classes[labels[i]]}\npred {classes[preds[i]]}", 6)
        _panel(axes[1, i], cam.overlay(images[i], masks[i]))
    fig.suptitle(f"{title} (Grad-CAM at {layer_text(layer)})", fontsize=8)
    return save(fig, path)


def occlusion_figure(model: torch.nn.Module, images: torch.Tensor, labels: list[int], classes: list[str],
                     path: Path) -> Path:
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 3.8), squeeze=False)
    for i in range(n):
        heat, patch, stride = cam.occlusion(model, images[i], labels[i])
        _panel(axes[0, i], cam.to_rgb(images[i]), classes[labels[i]])
        im = axes[1, i].imshow(heat, cmap="viridis", vmin=0, vmax=1)
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label="p(true class)")
    fig.suptitle(f"occlusion: black {patch}px patch, stride {stride}px", fontsize=8)
    return save(fig, path)


def layer_text(layer: cam.CamLayer) -> str:
    return f"{layer.name} ({layer.side}×{layer.side})" if layer.side else layer.name


def pick_indices(labels: np.ndarray, count: int, among: np.ndarray | None = None) -> list[int]:
    """Up to ``count`` test images spread over the classes (round robin), deterministic; only where ``among``
    (a boolean mask) is true when given."""
    keep = np.ones(len(labels), bool) if among is None else np.asarray(among, bool)
    by_class = [list(np.flatnonzero((labels == c) & keep)) for c in np.unique(labels)]
    out = []
    while len(out) < count and any(by_class):
        for group in by_class:
            if group and len(out) < count:
                out.append(int(group.pop(0)))
    return out
