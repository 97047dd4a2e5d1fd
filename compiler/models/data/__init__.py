"""A plan's data set in whatever form the user keeps it: a built-in name, an image folder
(ImageFolder layout) or CSV/TSV/JSONL texts, with labels mapped onto the teacher's classes.

Torch-free (numpy, and Pillow for images): the teacher's side is an `Expects`, built from a loaded
teacher (`Teacher.expects`) or, on the device side, from a bundle's manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cofc.compiler.models.data.expects import Expects
from cofc.compiler.models.data.images import read_image_folder
from cofc.compiler.models.data.texts import read_text_files
from cofc.compiler.models.datasets import Dataset, Split, load_dataset
from cofc.errors import DataError
from cofc.runtime.images import ImageInput, load_image

if TYPE_CHECKING:
    from cofc.compiler.plan import DatasetPlan

__all__ = ["DataError", "Expects", "ImageInput", "load_data", "load_image"]


def load_data(plan: DatasetPlan, expects: Expects) -> Dataset:
    """The data set a plan's `dataset:` section names, labelled in the teacher's class order."""
    if plan.image_folder is not None:
        return read_image_folder(plan.image_folder, expects, plan.held_out)
    if plan.text_file is not None:
        return read_text_files(
            plan.text_file,
            plan.test_file,
            plan.text_column,
            plan.label_column,
            expects,
            plan.held_out,
            plan.pair_column,
        )
    assert plan.name is not None  # the plan loader requires one of DATA_SOURCES
    data = load_dataset(plan.name)
    if data.kind == "image" and expects.image is not None:
        image = expects.image
        want = image.size if image.channels == 1 else (image.channels, *image.size)
        got = np.shape(data.train.inputs)[1:]
        if got != want:
            raise DataError(
                f"{plan.name}: images are {'x'.join(map(str, got))}; the teacher takes {'x'.join(map(str, want))}"
            )
    return in_teacher_order(data, expects)


def in_teacher_order(data: Dataset, expects: Expects) -> Dataset:
    """A built-in data set relabelled by class name when the teacher names the same classes in
    another order (its index order otherwise, as before names were compared)."""
    if not expects.named or data.classes == expects.classes or not set(data.classes) <= set(expects.classes):
        return data
    new = np.array([expects.classes.index(c) for c in data.classes], dtype=np.int64)
    relabel = lambda split: Split(split.inputs, new[split.labels])  # noqa: E731
    return Dataset(data.name, data.kind, expects.classes, relabel(data.train), relabel(data.test))
