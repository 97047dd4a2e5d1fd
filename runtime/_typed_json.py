"""Frozen dataclasses to and from JSON, checked field by field against their type hints.

A missing, unexpected or mistyped field is a `SchemaError` naming its path (`central.endpoint`,
`inputs[0].shape`), so a file that another version or a person wrote is refused with a reason
instead of failing later with a KeyError deep inside the runtime.

Supported hints: str, int, float, bool, Literal, `X | None`, tuple[X, ...], dict[str, X], nested
dataclasses, a union of dataclasses told apart by their `kind: Literal[...]` field, classes with a
`parse(text)` classmethod, which travel as their `str()` (an `Endpoint`), paths (as strings) and
numpy arrays (as nested lists). The build's stage results use it too (compiler/pipeline/).
"""

from __future__ import annotations

import dataclasses
import types
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

T = TypeVar("T")
_JSON_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


class SchemaError(ValueError):
    """A value that does not fit its type; `path` says where it is."""

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


def to_json(value: Any) -> Any:
    """Plain JSON data (dicts, lists, scalars) of a dataclass and everything inside it."""
    if hasattr(type(value), "parse") or isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any) -> T:
    """An instance of the dataclass `cls` from JSON data; SchemaError for anything that does not fit."""
    decoded: T = _decode(cls, data, "")
    return decoded


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _got(data: Any) -> str:
    return f"got {_JSON_NAMES.get(type(data), type(data).__name__)}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _decode(hint: Any, data: Any, path: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return _decode_union(args, data, path)
    if origin is Literal:
        if data not in args:
            raise SchemaError(path, f"{data!r} is not one of {', '.join(map(repr, args))}")
        return data
    if origin is tuple:
        if not isinstance(data, list):
            raise SchemaError(path, f"expected a list, {_got(data)}")
        return tuple(_decode(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(path, f"expected an object, {_got(data)}")
        return {k: _decode(args[1], v, _join(path, k)) for k, v in data.items()}
    if hint is np.ndarray:
        if not isinstance(data, list):
            raise SchemaError(path, f"expected a list, {_got(data)}")
        return np.asarray(data)
    if hint is Path or hasattr(hint, "parse"):
        if not isinstance(data, str):
            raise SchemaError(path, f"expected a string, {_got(data)}")
        try:
            return Path(data) if hint is Path else hint.parse(data)
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, data, path)
    return _decode_scalar(hint, data, path)


def _decode_union(args: tuple[Any, ...], data: Any, path: str) -> Any:
    options = [a for a in args if a is not type(None)]
    if data is None and len(options) < len(args):
        return None
    if len(options) == 1:
        return _decode(options[0], data, path)
    if not isinstance(data, dict):
        raise SchemaError(path, f"expected an object, {_got(data)}")
    kinds = {k: cls for cls in options for k in get_args(_hints(cls)["kind"])}
    if data.get("kind") not in kinds:
        raise SchemaError(_join(path, "kind"), f"{data.get('kind')!r} is not one of {', '.join(map(repr, kinds))}")
    return _decode_dataclass(kinds[data["kind"]], data, path)


def _decode_dataclass(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(path or cls.__name__, f"expected an object, {_got(data)}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unexpected = sorted(set(data) - set(names))
    if unexpected:
        raise SchemaError(_join(path, unexpected[0]), "unexpected field")
    missing = [n for n in names if n not in data]
    if missing:
        raise SchemaError(_join(path, missing[0]), "missing")
    values = {n: _decode(hints[n], data[n], _join(path, n)) for n in names}
    try:
        return cls(**values)
    except SchemaError as exc:  # a check across fields, naming one of them
        raise SchemaError(_join(path, exc.path), exc.message) from None
    except ValueError as exc:
        raise SchemaError(path or cls.__name__, str(exc)) from None


def _decode_scalar(hint: Any, data: Any, path: str) -> Any:
    if hint is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if hint in (str, int, bool) and isinstance(data, hint) and (hint is bool or not isinstance(data, bool)):
        return data
    if hint in _JSON_NAMES:
        raise SchemaError(path, f"expected {_JSON_NAMES[hint]}, {_got(data)}")
    raise TypeError(f"{path}: no JSON decoding for {hint!r}")
