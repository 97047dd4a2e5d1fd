"""Image folders in torchvision's ImageFolder layout (ROOT/train/<class>/*.png, ROOT/test/<class>/...)
as uint8 arrays at the teacher's input size, each file decoded by the runtime's `load_image`, the
same function a device uses on the image files it is asked about."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cofc.compiler.models.data.expects import Expects
from cofc.compiler.models.data.labels import UnknownLabel, label_map
from cofc.compiler.models.datasets import Dataset, Split, holdout
from cofc.errors import DataError
from cofc.runtime.images import IMAGE_SUFFIXES, ImageInput, image_files, load_image

LAYOUT = "ImageFolder layout: train/<class>/*.png|jpg, and optionally test/<class>/..."


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
        found = image_files(c)
        if not found:
            raise DataError(f"{c}: empty class folder (no {', '.join(IMAGE_SUFFIXES[:3])}, ... files)")
        files[c.name] = found
    return files


def _decode(files: dict[str, list[Path]], index: dict[str, int], image: ImageInput) -> Split:
    paths = [(p, index[c]) for c, found in files.items() for p in found]
    arrays = np.stack([load_image(p, image) for p, _ in paths])
    return Split(arrays, np.array([label for _, label in paths], dtype=np.int64))
