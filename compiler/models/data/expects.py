"""What a teacher takes, as the data loaders need to know it (torch-free, so that the runtime side
and `cofc bench` can build it from a bundle manifest as well as from a loaded teacher)."""
from __future__ import annotations

from dataclasses import dataclass

RESAMPLING = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")  # Pillow's filters


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


@dataclass(frozen=True)
class Expects:
    """A teacher's inputs and classes. Labels in a user's files map onto `classes` by name when the
    names mean something (`named`); a head without names (0, 1, ... or LABEL_0, LABEL_1, ...)
    takes integer labels as class indices, and other labels in sorted order, as torchvision's
    ImageFolder numbers its class folders."""
    kind: str  # "image" or "text"
    classes: tuple[str, ...]
    image: ImageInput | None = None  # for kind "image"

    @property
    def named(self) -> bool:
        generic = ({str(i) for i in range(len(self.classes))}, {f"LABEL_{i}" for i in range(len(self.classes))})
        return set(self.classes) not in generic
