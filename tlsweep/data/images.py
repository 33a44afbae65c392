"""Opening one image file as an RGB ``PIL.Image``: any mode (greyscale, palette, RGBA, 16-bit) and any size."""

from __future__ import annotations

import numpy as np
from PIL import Image

WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16/32-bit greyscale: scaled to 8 bits, not clipped


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB of any PIL mode; alpha is composited on white, palette transparency honoured."""
    if img.mode == "RGB":
        return img
    if img.mode in WIDE_MODES:
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(path, max_side: int | None = None) -> Image.Image:
    """Decode ``path`` as RGB, downscaled (aspect kept) so that neither side exceeds ``max_side``."""
    with Image.open(path) as img:
        if max_side and max(img.size) > max_side:
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, much faster
        img.load()
        rgb = to_rgb(img)
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return rgb
