"""Typed stage results to JSON and back (dacite reads the dataclasses' own type hints)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import dacite
import numpy as np

T = TypeVar("T")
_CONFIG = dacite.Config(cast=[tuple, Path], type_hooks={np.ndarray: np.asarray}, strict=True)


def to_json(result: Any) -> Any:
    """A dataclass as plain JSON values (arrays as lists, paths as strings)."""
    return json.loads(json.dumps(dataclasses.asdict(result), default=_plain))


def from_json(kind: type[T], data: Any) -> T:
    return dacite.from_dict(kind, data, _CONFIG)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
