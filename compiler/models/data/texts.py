"""Labelled texts from CSV, TSV or JSONL files with named text and label columns (UTF-8)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from cofc.compiler.models.data.expects import Expects
from cofc.compiler.models.data.labels import UnknownLabel, label_map
from cofc.compiler.models.datasets import DataError, Dataset, Split, holdout

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None}  # by file suffix; None: one JSON object a line


class Rows:
    """One file's texts, their labels (as written, str) and the line each row starts on."""

    def __init__(self, path: Path):
        self.path = path
        self.texts: list[str] = []
        self.labels: list[str] = []
        self.lines: list[int] = []

    def add(self, text: str, label: str, line: int) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.lines.append(line)


def read_rows(path: Path, text_column: str, label_column: str) -> Rows:
    """Read a whole file; one line naming the file (and row) for anything unusable."""
    if path.suffix.lower() not in DELIMITERS:
        raise DataError(f"{path}: unknown text file type {path.suffix!r} (use {', '.join(DELIMITERS)})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    delimiter = DELIMITERS[path.suffix.lower()]
    rows = _jsonl(path, text, text_column, label_column) if delimiter is None else \
        _table(path, text, delimiter, text_column, label_column)
    if not rows.texts:
        raise DataError(f"{path}: no rows below the header")
    return rows


def _table(path: Path, text: str, delimiter: str, text_column: str, label_column: str) -> Rows:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = reader.fieldnames or []
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in columns:
            raise DataError(f"{path}: no column {column!r} (columns: {', '.join(columns)}); "
                            f"set dataset.{role}_column")
    rows = Rows(path)
    try:
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():  # more fields than the header, or fewer
                raise DataError(f"{path} line {line}: the row's fields do not match the header's "
                                f"{len(columns)} columns")
            _add(rows, row[text_column], row[label_column], line, label_column)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    return rows


def _jsonl(path: Path, text: str, text_column: str, label_column: str) -> Rows:
    rows = Rows(path)
    for line, content in enumerate(text.splitlines(), 1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except ValueError:
            raise DataError(f"{path} line {line}: not a JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {line}: not a JSON object")
        for column in (text_column, label_column):
            if column not in row:
                raise DataError(f"{path} line {line}: no {column!r} field (fields: {', '.join(row)})")
        if not isinstance(row[text_column], str):
            raise DataError(f"{path} line {line}: {text_column!r} is not a string")
        label = row[label_column]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataError(f"{path} line {line}: {label_column!r} must be a string or an integer")
        _add(rows, row[text_column], str(label), line, label_column)
    return rows


def _add(rows: Rows, text: str, label: str, line: int, label_column: str) -> None:
    if not label.strip():
        raise DataError(f"{rows.path} line {line}: empty {label_column!r}")
    rows.add(text, label.strip(), line)


def classes_in_files(paths: list[Path], text_column: str, label_column: str) -> tuple[str, ...]:
    """The classes of a new task head for these files: their label names in sorted order, or
    0..max when every label is a number (so label k is class k)."""
    labels = {label for path in paths for label in read_rows(path, text_column, label_column).labels}
    if all(label.isdigit() for label in labels):
        return tuple(str(i) for i in range(max(map(int, labels)) + 1))
    return tuple(sorted(labels))


def read_text_files(train: Path, test: Path | None, text_column: str, label_column: str,
                    expects: Expects, held_out: float) -> Dataset:
    """A train file, and a test file or a seeded `held_out` fraction of the train file."""
    if expects.kind != "text":
        raise DataError(f"{train}: a text file, but the teacher takes {expects.kind}s")
    files = [read_rows(train, text_column, label_column)]
    if test is not None:
        files.append(read_rows(test, text_column, label_column))
    try:
        index, classes = label_map(expects, {label for rows in files for label in rows.labels})
    except UnknownLabel as exc:
        rows = next(r for r in files if exc.label in r.labels)
        raise DataError(f"{rows.path} line {rows.lines[rows.labels.index(exc.label)]}: {exc}") from None
    splits = [Split(rows.texts, np.array([index[label] for label in rows.labels], dtype=np.int64))
              for rows in files]
    if test is None:
        if len(splits[0]) < 2:
            raise DataError(f"{train}: too few rows to hold out a test split")
        splits = list(holdout(splits[0].inputs, splits[0].labels, held_out))
    return Dataset(train.stem, "text", classes, splits[0], splits[1])
