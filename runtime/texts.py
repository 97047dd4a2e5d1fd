"""Texts from the files users keep them in: CSV, TSV or JSONL with a named text column (a second,
pair column for tasks on two texts, e.g. premise and hypothesis; and a label column when they are
labelled), or plain text, one per line. Torch-free: the compiler reads a
user's data set with it, and a device the texts it is asked about (`cofc run --input`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cofc.errors import DataError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None}  # by file suffix; None: one JSON object a line
Text = str | tuple[str, str]  # one text, or a (first, second) pair
PLAN_OPTIONS = "dataset.{}_column"  # what a user sets to name another column (`cofc run`: --{}-column)


class Rows:
    """One file's texts, their labels (as written, str; none for unlabelled texts) and the line
    each row starts on."""

    def __init__(self, path: Path):
        self.path = path
        self.texts: list[Text] = []
        self.labels: list[str] = []
        self.lines: list[int] = []

    def add(self, text: Text, label: str | None, line: int) -> None:
        self.texts.append(text)
        if label is not None:
            self.labels.append(label)
        self.lines.append(line)


def read_rows(
    path: Path, text_column: str, label_column: str | None, option: str = PLAN_OPTIONS, pair_column: str | None = None
) -> Rows:
    """Read a whole file (`label_column` None: texts alone; `pair_column`: (text, pair) pairs); one
    line naming the file (and row) for anything unusable, and for a missing column the `option`
    that names another."""
    if path.suffix.lower() not in DELIMITERS:
        raise DataError(f"{path}: unknown text file type {path.suffix!r} (use {', '.join(DELIMITERS)})")
    text = _read_utf8(path)
    named = (("text", text_column), ("pair", pair_column), ("label", label_column))
    columns = {role: column for role, column in named if column}
    delimiter = DELIMITERS[path.suffix.lower()]
    rows = _jsonl(path, text, columns) if delimiter is None else _table(path, text, delimiter, columns, option)
    if not rows.texts:
        raise DataError(f"{path}: no rows below the header")
    return rows


def read_texts(path: Path, text_column: str = "text", pair_column: str | None = None) -> list[Text]:
    """Texts to ask about: a .txt file's non-empty lines, or the text column (and pair column) of a
    CSV/TSV/JSONL file."""
    suffix = path.suffix.lower()
    if suffix not in (".txt", *DELIMITERS):
        raise DataError(f"{path}: unknown text file type {path.suffix!r} (use .txt, {', '.join(DELIMITERS)})")
    if suffix != ".txt":
        return read_rows(path, text_column, None, option="--{}-column", pair_column=pair_column).texts
    if pair_column is not None:
        raise DataError(
            f"{path}: the model takes pairs of texts; give a .csv, .tsv or .jsonl with a {pair_column!r} column"
        )
    return [line for line in _read_utf8(path).splitlines() if line.strip()]  # not empty: _read_utf8 checks


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def _table(path: Path, text: str, delimiter: str, columns: dict[str, str], option: str) -> Rows:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    names = reader.fieldnames or []
    for role, column in columns.items():
        if column not in names:
            raise DataError(f"{path}: no column {column!r} (columns: {', '.join(names)}); set {option.format(role)}")
    rows = Rows(path)
    try:
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():  # more fields than the header, or fewer
                raise DataError(f"{path} line {line}: the row's fields do not match the header's {len(names)} columns")
            sample: Text = (
                row[columns["text"]] if "pair" not in columns else (row[columns["text"]], row[columns["pair"]])
            )
            _add(rows, sample, row.get(columns.get("label")), line, columns.get("label"))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    return rows


def _jsonl(path: Path, text: str, columns: dict[str, str]) -> Rows:
    rows = Rows(path)
    text_column, pair_column, label_column = columns["text"], columns.get("pair"), columns.get("label")
    for line, content in enumerate(text.splitlines(), 1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except ValueError:
            raise DataError(f"{path} line {line}: not a JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {line}: not a JSON object")
        for column in columns.values():
            if column not in row:
                raise DataError(f"{path} line {line}: no {column!r} field (fields: {', '.join(row)})")
        for column in (text_column, pair_column):
            if column and not isinstance(row[column], str):
                raise DataError(f"{path} line {line}: {column!r} is not a string")
        label = row.get(label_column)
        if label_column and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise DataError(f"{path} line {line}: {label_column!r} must be a string or an integer")
        sample: Text = row[text_column] if pair_column is None else (row[text_column], row[pair_column])
        _add(rows, sample, None if label is None else str(label), line, label_column)
    return rows


def _add(rows: Rows, text: Text, label: str | None, line: int, label_column: str | None) -> None:
    if label_column and not label.strip():
        raise DataError(f"{rows.path} line {line}: empty {label_column!r}")
    rows.add(text, label.strip() if label_column else None, line)
