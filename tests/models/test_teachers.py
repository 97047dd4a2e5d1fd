"""The committed example teachers load offline and reach the accuracy the README states (on whole
test splits: tens of seconds for MiniLM)."""

from __future__ import annotations

import pytest

from cofc.compiler.models.datasets import load_dataset
from cofc.compiler.models.metrics import accuracy
from cofc.compiler.models.teacher import load_teacher
from tests.helpers import REPO

TEACHERS = {"vit_fashion_mnist.pt": "fashion-mnist", "minilm_reuters_r8.pt": "reuters-r8"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_teacher_reaches_the_stated_accuracy(name):
    teacher = load_teacher(REPO / "examples" / "teachers" / name)
    data = load_dataset(TEACHERS[name])
    measured = accuracy(teacher, data.test, batch=128)
    # The number recorded when it was trained, on the whole test split, is what we get now ...
    assert measured == pytest.approx(teacher.record["test_accuracy"], abs=1e-4)
    # ... and what the README says, to two decimals of a percent.
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if f"examples/teachers/{name}" in line and "|" in line)
    assert f"{100 * measured:.2f}%" in row, row
    if teacher.family == "vit":
        assert measured >= 0.90
        assert teacher.spec.heads >= 6
