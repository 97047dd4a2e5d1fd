"""Static INT8 quantization of an exported graph for ONNX Runtime, from the calibration inputs the
build already stores beside it (`*.calib.npz`, runtime/backends/_calibration.py).

The scheme (`SCHEME`): QOperator format (MatMulInteger/QLinearMatMul kernels), unsigned 8-bit
activations per tensor with MinMax ranges and INT8 weights per output channel (U8S8: the pair
ONNX Runtime's x86 kernels multiply fastest, with VNNI or without), on the MatMul and Gemm nodes
only: they are where a transformer spends its FLOPs (attention projections, the MLP, the head),
while LayerNorm, Softmax and GELU stay FP32 and keep their accuracy. QDQ with signed activations
(S8S8) ran the quick build's teacher no faster than FP32 on this project's hosts, with VNNI and
without, and U8S8 ran it 2.1x and 1.45x faster; `tools/quant_schemes.py` measures every scheme on
a built plan (docs/deploy.md). These twins are for ONNX Runtime only: a TensorRT device gets the
FP32 graph and builds its own INT8 engine (compiler/export/precision.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from cofc.runtime.backends._calibration import calibration_path

OPS = ("MatMul", "Gemm")  # the nodes quantized: a transformer's FLOPs
BATCH = 32  # calibration batch: the stored inputs run through the graph this many at a time


@dataclass(frozen=True)
class Scheme:
    """How a graph is quantized: `qdq` or `qoperator` format, activations `int8` or `uint8`
    (QOperator's x86 kernels take only unsigned ones), INT8 weights per channel or per tensor, and
    whether only the MatMuls by a weight are quantized (`weights_only`), leaving attention's two
    products of activations (QK^T and its product with V) in FP32."""

    format: str = "qdq"
    per_channel: bool = True
    activations: str = "int8"
    weights_only: bool = False

    def __post_init__(self) -> None:
        if self.format == "qoperator" and self.activations != "uint8":
            raise ValueError("QOperator's x86 kernels take uint8 activations")

    def __str__(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        pair = "U8S8" if self.activations == "uint8" else "S8S8"
        which = "MatMul by a weight/Gemm" if self.weights_only else "/".join(OPS)
        return f"{self.format.upper()} {pair}, {channel} INT8 weights, {which}"


SCHEME = Scheme("qoperator", True, "uint8")  # measured in tools/quant_schemes.py


def int8_path(graph: Path) -> Path:
    """Where the INT8 twin of `graph` is written: onnx/fast.onnx -> onnx/fast.int8.onnx."""
    return graph.with_name(graph.stem + ".int8.onnx")


class _Batches(CalibrationDataReader):
    """The calibration inputs, `batch` samples at a time, as ONNX Runtime's calibrator asks."""

    def __init__(self, feeds: Mapping[str, np.ndarray], batch: int):
        n = len(next(iter(feeds.values())))
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {k: np.ascontiguousarray(v[i : i + batch]) for k, v in feeds.items()} for i in range(0, n, batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def stored_calibration(graph: Path) -> dict[str, np.ndarray]:
    """The calibration inputs `cofc build` stored beside `graph`."""
    with np.load(calibration_path(graph)) as stored:
        return {k: stored[k] for k in stored.files}


def quantize_graph(
    graph: Path, feeds: Mapping[str, np.ndarray], scheme: Scheme = SCHEME, out: Path | None = None
) -> Path:
    """Write the INT8 twin of `graph` (at `out`, by default `int8_path(graph)`), with activation
    ranges calibrated on `feeds` (input name -> samples). Written atomically."""
    out = out or int8_path(graph)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with _quiet():
            quantize_static(
                str(graph),
                tmp,
                _Batches(feeds, BATCH),
                quant_format=QuantFormat.QDQ if scheme.format == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=list(OPS),
                per_channel=scheme.per_channel,
                activation_type=QuantType.QUInt8 if scheme.activations == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": scheme.weights_only},
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer's advice (run its pre-processing pass; prefer QDQ for S8S8) goes to the root
    logger at warning level, where a build's user would read it as a problem with their plan."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
