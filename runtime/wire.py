"""The wire format between devices: a small JSON header frame, then one raw frame per array.

    frame 0   {"v": 1, "type": ..., "id": ..., "arrays": [{"name", "dtype", "shape"}, ...], ...}
    frame 1+  the arrays' bytes, C order, sent with copy=False (zero-copy for large frames)

Never pickle. `decode` checks everything a peer controls: version, header size and JSON, message
type, field types, dtype (an allowlist), shape (rank, sizes), that each buffer's length is
exactly what its dtype and shape say, and total size. What fails raises `WireError` with a
`kind`, which the caller counts and logs once; it never takes the process down.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
TYPES = ("hello", "welcome", "refuse", "request", "feature", "infer", "answer", "ping", "stats")
DTYPES = ("float32", "float16", "int64", "int32", "uint16", "uint8")
MAX_HEADER = 4096
MAX_RANK = 6
MAX_BYTES = 64 << 20


class WireError(ValueError):
    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        super().__init__(f"{kind}: {detail}" if detail else kind)


@dataclass
class Message:
    type: str
    id: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def encode(message: Message) -> list[Any]:
    """Frames to send with `send_multipart(frames, copy=False)`."""
    arrays = [(name, np.ascontiguousarray(a)) for name, a in message.arrays.items()]
    header = {
        "v": VERSION,
        "type": message.type,
        "id": message.id,
        "arrays": [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape)} for n, a in arrays],
        **message.meta,
    }
    return [json.dumps(header, separators=(",", ":")).encode(), *(a.data.cast("B") for _, a in arrays)]


def _as_bytes(frame: Any) -> memoryview:
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def decode(frames: Sequence[Any], max_bytes: int = MAX_BYTES) -> Message:
    """Parse and validate frames received with `recv_multipart(copy=False)` (or bytes)."""
    if not frames:
        raise WireError("empty")
    head = _as_bytes(frames[0])
    if len(head) > MAX_HEADER:
        raise WireError("oversized-header", f"{len(head)} bytes")
    try:
        header = json.loads(bytes(head))
    except (ValueError, UnicodeDecodeError):
        raise WireError("bad-header", "not JSON") from None
    if not isinstance(header, dict):
        raise WireError("bad-header", "not an object")
    if header.get("v") != VERSION:
        raise WireError("bad-version", repr(header.get("v")))
    kind, ident, specs = header.get("type"), header.get("id", 0), header.get("arrays", [])
    if kind not in TYPES:
        raise WireError("bad-type", repr(kind)[:40])
    if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 2**63:
        raise WireError("bad-id")
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise WireError(
            "frame-count", f"{len(frames) - 1} buffers for {len(specs) if isinstance(specs, list) else '?'} arrays"
        )
    arrays, total = {}, 0
    for spec, frame in zip(specs, frames[1:], strict=True):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] in arrays:
            raise WireError("bad-array")
        dtype, shape = spec.get("dtype"), spec.get("shape")
        if dtype not in DTYPES:
            raise WireError("bad-dtype", repr(dtype)[:40])
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_RANK
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape)
        ):
            raise WireError("bad-shape")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        total += size
        if total > max_bytes:
            raise WireError("oversized", f"{total} bytes")
        buf = _as_bytes(frame)
        if len(buf) != size:
            raise WireError("size-mismatch", f"{spec['name']}: {len(buf)} bytes for {dtype}{shape}")
        arrays[spec["name"]] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    meta = {k: v for k, v in header.items() if k not in ("v", "type", "id", "arrays")}
    return Message(kind, ident, arrays, meta)


def match_inputs(arrays: dict[str, np.ndarray], specs: Sequence[Any]) -> dict[str, np.ndarray]:
    """The arrays a graph needs, checked against its input specs (name, dtype, rank, fixed sizes)."""
    feeds = {}
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None:
            raise WireError("missing-input", spec.name)
        if (
            array.dtype != spec.dtype
            or len(array.shape) != len(spec.shape)
            or any(want is not None and got != want for got, want in zip(array.shape, spec.shape, strict=True))
        ):
            raise WireError("mismatched-input", f"{spec.name} {array.dtype}{list(array.shape)}")
        feeds[spec.name] = array
    return feeds


class Rejections(dict[str, int]):
    """Rejected messages counted per kind; the first of each kind is logged, the rest only counted,
    so a flood of bad frames neither kills a node nor floods its log."""

    def __init__(self, log: Any):
        super().__init__()
        self.log = log

    def add(self, kind: str, detail: str) -> None:
        self[kind] = self.get(kind, 0) + 1
        if self[kind] == 1:
            self.log.warning("rejected (%s): %s; further ones of this kind are only counted", kind, detail)
