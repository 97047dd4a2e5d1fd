"""ONNX Runtime: the reference backend (CPU everywhere; other execution providers if present)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cofc.runtime.backends._base import Backend, TensorSpec

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
}


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 1, providers: list[str] | None = None):
        super().__init__(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the optimizer's notes are not the user's concern
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = threads
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(model_path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        self._output_names = [o.name for o in self._outputs]

    @property
    def version(self) -> str:
        return str(ort.__version__)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None  # `run` refuses a closed backend
        return dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=True))

    def _release(self) -> None:
        self._session = None  # ONNX Runtime frees a session's memory when its last reference goes


def _spec(arg: Any) -> TensorSpec:  # an onnxruntime NodeArg (untyped)
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES[arg.type]))
