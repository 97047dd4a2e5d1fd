"""Backends behind one interface. Each is imported only when asked for, so a CPU device never
imports TensorRT and a Jetson never needs ONNX Runtime. `BACKENDS` is also the choice list of
`cofc run --backend` and `cofc profile --backend`, so the two commands spell them alike."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cofc.errors import CofcError
from cofc.runtime.backends._base import Backend, BackendClosedError, TensorSpec

BACKENDS = ("onnxruntime", "tensorrt")


def available() -> list[str]:
    """The backends whose libraries import on this machine."""
    found = []
    if importlib.util.find_spec("onnxruntime"):
        found.append("onnxruntime")
    if importlib.util.find_spec("tensorrt") and (
        importlib.util.find_spec("cuda") or importlib.util.find_spec("cuda.bindings")
    ):
        found.append("tensorrt")
    return found


def check_pacable(name: str, threads: int) -> None:
    """Pacing counts the calling thread's CPU time: ONNX Runtime with one intra-op thread only."""
    if name != "onnxruntime" or threads != 1:
        raise CofcError("a cpu share emulates a one-thread CPU device: it needs --backend onnxruntime and --threads 1")


def open_backend(
    name: str, model_path: str | Path, *, threads: int = 1, precision: str = "fp32", cpu_share: float | None = None
) -> Backend:
    """Load `model_path` (an ONNX file) with the named backend; close it (`with ... as backend:`).

    `cpu_share` (onnxruntime, one thread) emulates a device with that share of this machine's
    core: each run is paced to its CPU time / share (`cofc bench --emulate`, `cofc profile`)."""
    if cpu_share is not None:
        check_pacable(name, threads)
        from cofc.runtime.backends._paced import Paced

        return Paced(open_backend(name, model_path, threads=1), cpu_share)
    if name not in BACKENDS:
        raise CofcError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    if name not in available():
        raise CofcError(f"backend {name!r} is not available here (its Python package does not import)")
    if name == "onnxruntime":
        from cofc.runtime.backends.ort import OrtBackend

        return OrtBackend(model_path, threads=threads)
    from cofc.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(model_path, precision=precision)


__all__ = ["BACKENDS", "Backend", "BackendClosedError", "TensorSpec", "available", "check_pacable", "open_backend"]
