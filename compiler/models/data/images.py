"""Image folders in torchvision's ImageFolder layout (ROOT/train/<class>/*.png, ROOT/test/<class>/...)
as uint8 arrays at the teacher's input size, decoded with Pillow.

`load_image` is the whole path from a file to the array the teacher's preprocessing (and the device
runtime's) normalises: convert to grey or RGB, scale and cut as `ImageInput` says. Anything the
device side decodes must go through the same steps with the same parameters."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cofc.compiler.models.data.expects import Expects, ImageInput
from cofc.compiler.models.data.labels import UnknownLabel, label_map
from cofc.compiler.models.datasets import DataError, Dataset, Split, holdout

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LAYOUT = "ImageFolder layout: train/<class>/*.png|jpg, and optionally test/<class>/..."


def load_image(path: Path, image: ImageInput) -> np.ndarray:
    """One image file as uint8 (H, W) (grey) or (3, H, W) (RGB) at the teacher's size."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L" if image.channels == 1 else "RGB")
    except Exception as exc:  # not an image, truncated, a decompression bomb: name the file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({why})") from None
    array = np.asarray(fit(img, image), dtype=np.uint8)
    return array if image.channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def fit(img, image: ImageInput):
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


def read_image_folder(root: Path, expects: Expects, held_out: float) -> Dataset:
    """train/ (and test/, else a seeded `held_out` fraction of train/) of an ImageFolder root."""
    if expects.image is None:
        raise DataError(f"{root}: an image folder, but the teacher takes {expects.kind}s")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({LAYOUT})")
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no train/ folder ({LAYOUT})")
    parts = {"train": _class_files(root / "train")}
    if (root / "test").is_dir():
        parts["test"] = _class_files(root / "test")
    names = {c for files in parts.values() for c in files}
    try:
        index, classes = label_map(expects, names)
    except UnknownLabel as exc:
        where = next(root / part / exc.label for part, files in parts.items() if exc.label in files)
        raise DataError(f"{where}: class folder {exc}") from None
    splits = {part: _decode(files, index, expects.image) for part, files in parts.items()}
    if "test" not in splits:
        if len(splits["train"]) < 2:
            raise DataError(f"{root / 'train'}: too few images to hold out a test split")
        splits["train"], splits["test"] = holdout(splits["train"].inputs, splits["train"].labels, held_out)
    return Dataset(root.name, "image", classes, splits["train"], splits["test"])


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Each class folder's image files (any depth, sorted; other files are skipped, as torchvision
    does); an empty class folder is an error, not a class with no samples."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class folders ({LAYOUT})")
    files = {}
    for c in classes:
        found = sorted(p for p in c.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        if not found:
            raise DataError(f"{c}: empty class folder (no {', '.join(IMAGE_SUFFIXES[:3])}, ... files)")
        files[c.name] = found
    return files


def _decode(files: dict[str, list[Path]], index: dict[str, int], image: ImageInput) -> Split:
    paths = [(p, index[c]) for c, found in files.items() for p in found]
    arrays = np.stack([load_image(p, image) for p, _ in paths])
    return Split(arrays, np.array([label for _, label in paths], dtype=np.int64))
