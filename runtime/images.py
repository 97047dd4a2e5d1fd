"""Image files as the uint8 arrays a ViT teacher takes, decoded with Pillow (no torch).

The one path from a file to pixels, for both sides: the compiler reads a user's ImageFolder with
it, and a device reads the image files it is asked about with the same steps and the parameters
its bundle manifest carries, so both see the same pixels (tests/runtime/test_raw_inputs.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cofc.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

RESAMPLING = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")  # Pillow's filters
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass(frozen=True)
class ImageInput:
    """How an image file becomes the uint8 array a ViT teacher takes, as timm's evaluation transform
    does it: scale the shorter side to floor(side / crop_pct) with `interpolation`, then cut the
    centre (height, width). crop_pct 1 and a square image: a plain resize."""

    channels: int  # 1: grey (H, W) arrays; 3: RGB (3, H, W)
    size: tuple[int, int]  # (height, width)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"images have 1 or 3 channels, not {self.channels}")
        if self.interpolation not in RESAMPLING:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; known: {', '.join(RESAMPLING)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], not {self.crop_pct}")

    @property
    def shape(self) -> tuple[int, ...]:
        """One array's shape: (H, W) grey, (3, H, W) RGB."""
        return self.size if self.channels == 1 else (self.channels, *self.size)


def load_image(path: Path, image: ImageInput) -> np.ndarray:
    """One image file as uint8 (H, W) (grey) or (3, H, W) (RGB) at the teacher's size."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if image.channels == 1 else "RGB")
    except Exception as exc:  # not an image, truncated, a decompression bomb: name the file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({why})") from None
    array = np.asarray(fit(img, image), dtype=np.uint8)
    return array if image.channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def fit(img: PILImage, image: ImageInput) -> PILImage:
    """timm's evaluation resize and centre crop, on a Pillow image (torchvision's arithmetic:
    the shorter side to floor(side / crop_pct), the longer side in proportion, truncated; then
    the centre, its offsets rounded)."""
    from PIL import Image

    height, width = image.size
    scale_h, scale_w = math.floor(height / image.crop_pct), math.floor(width / image.crop_pct)
    w, h = img.size
    if scale_h == scale_w:
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = scale_h, int(scale_h * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:  # a non-square input: the smallest scale that covers (scale_h, scale_w)
        factor = max(scale_h / h, scale_w / w)
        new_w, new_h = max(scale_w, round(w * factor)), max(scale_h, round(h * factor))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), getattr(Image.Resampling, image.interpolation.upper()))
    top, left = int(round((new_h - height) / 2.0)), int(round((new_w - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (any depth, sorted; hidden and other files skipped, as
    torchvision's ImageFolder does)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
