"""A small learnable ImageFolder (coloured shapes on noise) for tests, demos and benchmarks."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")
_BASE_COLOURS = ((220, 60, 60), (60, 180, 75), (60, 100, 220), (230, 200, 40), (170, 60, 200), (40, 200, 200))


def _draw(shape: str, size: int, rng: random.Random, colour: tuple[int, int, int]) -> Image.Image:
    bg = tuple(rng.randint(0, 90) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    px = img.load()
    for _ in range(size * size // 6):  # speckle noise
        x, y = rng.randrange(size), rng.randrange(size)
        px[x, y] = tuple(min(255, c + rng.randint(0, 80)) for c in bg)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    fill = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    else:
        draw.rectangle((cx - r, cy - r / 4, cx + r, cy + r / 4), fill=fill)
    return img


def make_shapes_dataset(
    root: str | Path,
    num_classes: int = 3,
    per_class: int | dict[str, int] = 30,
    size: int = 32,
    seed: int = 0,
    split_folders: bool = True,
    colour_cue: bool = True,
    fmt: str = "png",
) -> Path:
    """Write a small learnable ImageFolder of shapes on noise: ``root/{train,val,test}/<shape>/*.png``.

    Args:
        root: The folder to write.
        num_classes: How many shapes (classes), 2 up to the number of shapes drawn.
        per_class: Images per class: an int (val and test get a third of it, at least 2; all of it without
            split folders), or per split as ``{"train": 40, "val": 10, ...}``.
        size: Image side in pixels.
        seed: Seeds shapes, colours and noise.
        split_folders: False writes ``root/<shape>/`` (one folder for the sweep's ``data.split``).
        colour_cue: Each class gets its own hue (learnable from scratch in a few epochs); without it only the
            shape tells the classes apart.
        fmt: Image file format (``png``, ``jpg``, ...).

    Returns:
        ``root``.

    Raises:
        ValueError: ``num_classes`` is out of range.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be within 2..{len(SHAPES)}")
    root = Path(root)
    rng = random.Random(seed)
    counts = per_class if isinstance(per_class, dict) else (
        {"train": per_class, "val": max(2, per_class // 3), "test": max(2, per_class // 3)} if split_folders
        else {"": per_class})
    for split, n in counts.items():
        for k, shape in enumerate(SHAPES[:num_classes]):
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = _BASE_COLOURS[k] if colour_cue else _BASE_COLOURS[rng.randrange(len(_BASE_COLOURS))]
                _draw(shape, size, rng, colour).save(folder / f"{shape}_{i:04d}.{fmt}")
    return root
