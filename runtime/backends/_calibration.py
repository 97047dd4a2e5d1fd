"""INT8 calibration inputs: model-ready samples from the plan's calibration split, stored beside
the ONNX graph they feed (`backbone.onnx` -> `backbone.calib.npz`), so that a device building its
INT8 engine at first `cofc run` calibrates on the data the sub-model was calibrated on, with no
dataset on the device. Plain numpy, so the host writes and tests it without TensorRT.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from cofc.errors import CofcError
from cofc.runtime._files import atomic_write

SUFFIX = ".calib.npz"


def calibration_path(onnx_path: Path) -> Path:
    """Where the calibration inputs of `onnx_path` live."""
    return onnx_path.with_name(onnx_path.stem + SUFFIX)


def save_calibration(onnx_path: Path, feeds: Mapping[str, np.ndarray]) -> Path:
    """Write `feeds` (input name -> array, all with the same first axis) beside `onnx_path`."""
    lengths = {len(v) for v in feeds.values()}
    if len(lengths) != 1:
        raise ValueError(f"calibration inputs disagree on the sample count: {sorted(lengths)}")
    path = calibration_path(onnx_path)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.ascontiguousarray(a) for name, a in feeds.items()})  # type: ignore[arg-type]  # stub: **kwds may be allow_pickle
    atomic_write(path, buffer.getvalue())
    return path


class CalibrationBatches:
    """Fixed-size batches of the stored inputs, in the order an INT8 calibrator asks for them.

    TensorRT calibrates with one batch size, so a last partial batch is dropped."""

    def __init__(self, path: Path, input_names: Sequence[str], batch: int = 32):
        if not path.exists():
            raise CofcError(
                f"INT8 needs calibration inputs beside the graph, and {path} is missing; "
                "rebuild the bundle with `export: {precision: int8}` in the plan"
            )
        with np.load(path) as stored:
            missing = [n for n in input_names if n not in stored.files]
            if missing:
                raise CofcError(f"{path} lacks calibration inputs for {', '.join(missing)}")
            self.arrays = {n: stored[n] for n in input_names}
        self.samples = len(next(iter(self.arrays.values())))
        self.batch = min(batch, self.samples)
        if self.batch == 0:
            raise CofcError(f"{path} holds no calibration samples")

    def __len__(self) -> int:
        return self.samples // self.batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self) * self.batch, self.batch):
            yield {n: np.ascontiguousarray(a[start : start + self.batch]) for n, a in self.arrays.items()}
