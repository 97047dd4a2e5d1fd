"""Labelled texts from CSV, TSV or JSONL files with named text and label columns (UTF-8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cofc.compiler.models.data.expects import Expects
from cofc.compiler.models.data.labels import UnknownLabel, label_map
from cofc.compiler.models.datasets import Dataset, Split, holdout
from cofc.errors import DataError
from cofc.runtime.texts import read_rows


def classes_in_files(
    paths: list[Path], text_column: str, label_column: str, pair_column: str | None = None
) -> tuple[str, ...]:
    """The classes of a new task head for these files: their label names in sorted order, or
    0..max when every label is a number (so label k is class k)."""
    labels = {
        label for path in paths for label in read_rows(path, text_column, label_column, pair_column=pair_column).labels
    }
    if all(label.isdigit() for label in labels):
        return tuple(str(i) for i in range(max(map(int, labels)) + 1))
    return tuple(sorted(labels))


def read_text_files(
    train: Path,
    test: Path | None,
    text_column: str,
    label_column: str,
    expects: Expects,
    held_out: float,
    pair_column: str | None = None,
) -> Dataset:
    """A train file, and a test file or a seeded `held_out` fraction of the train file; with a
    `pair_column`, each input is a (text, pair) pair."""
    if expects.kind != "text":
        raise DataError(f"{train}: a text file, but the teacher takes {expects.kind}s")
    files = [read_rows(train, text_column, label_column, pair_column=pair_column)]
    if test is not None:
        files.append(read_rows(test, text_column, label_column, pair_column=pair_column))
    try:
        index, classes = label_map(expects, {label for rows in files for label in rows.labels})
    except UnknownLabel as exc:
        rows = next(r for r in files if exc.label in r.labels)
        raise DataError(f"{rows.path} line {rows.lines[rows.labels.index(exc.label)]}: {exc}") from None
    splits = [Split(rows.texts, np.array([index[label] for label in rows.labels], dtype=np.int64)) for rows in files]
    if test is None:
        if len(splits[0]) < 2:
            raise DataError(f"{train}: too few rows to hold out a test split")
        splits = list(holdout(splits[0].inputs, splits[0].labels, held_out))
    return Dataset(train.stem, "text", classes, splits[0], splits[1])
