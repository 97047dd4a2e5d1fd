"""TensorRT: the backend of a Jetson or any NVIDIA GPU, through the public TensorRT 10 API and
cuda-python. Imported only where `tensorrt` is installed; nothing on the CPU path touches it.

Engines are specific to the GPU, the TensorRT version and the precision, so they are built here,
from the bundle's ONNX, on first use, and cached beside it under a name that says all three
(`<stem>.<precision>.trt<version>.sm<major><minor>.engine`) with a sidecar JSON holding the
ONNX's sha256. An engine whose sidecar does not match the ONNX in hand is rebuilt, never loaded.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorrt as trt

try:  # cuda-python >= 12.6 moved the runtime bindings
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python
    from cuda import cudart

from cofc.runtime.backends._base import Backend, TensorSpec
from cofc.runtime.bundle import sha256_file

_LOGGER = trt.Logger(trt.Logger.WARNING)
# Layers that overflow or lose accuracy in FP16 inside transformers: keep them in FP32.
_FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability(device: int = 0) -> str:
    props = _check(cudart.cudaGetDeviceProperties(device))
    return f"{props.major}{props.minor}"


def engine_path(onnx_path: Path, precision: str) -> Path:
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.trt{trt.__version__}"
                               f".sm{compute_capability()}.engine")


def build_engine(onnx_path: Path, precision: str, max_batch: int = 8,
                 workspace_mb: int = 1024, timing_cache: Path | None = None) -> bytes:
    """Parse the ONNX and build a serialized engine with a dynamic batch of 1..max_batch."""
    builder = trt.Builder(_LOGGER)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        keep = {getattr(trt.LayerType, t) for t in _FP32_LAYER_TYPES if hasattr(trt.LayerType, t)}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in keep:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    elif precision != "fp32":
        raise ValueError(f"precision {precision!r} needs a calibrator (INT8 arrives with the export issue)")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    if timing_cache is not None:
        _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_or_build(onnx_path: Path, precision: str) -> bytes:
    """The cached engine for this ONNX, GPU and TensorRT version, rebuilt when stale or foreign."""
    path = engine_path(onnx_path, precision)
    sidecar = path.with_suffix(".json")
    want = {"onnx_sha256": sha256_file(onnx_path), "precision": precision, "tensorrt": trt.__version__,
            "compute_capability": compute_capability()}
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == want:
        return path.read_bytes()
    engine = build_engine(onnx_path, precision, timing_cache=onnx_path.with_name("timing.cache"))
    _atomic_write(path, engine)
    _atomic_write(sidecar, json.dumps(want, indent=2).encode())
    return engine


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model_path: str | Path, precision: str = "fp32"):
        self.precision = precision
        self._runtime = trt.Runtime(_LOGGER)
        self._engine = self._runtime.deserialize_cuda_engine(load_or_build(Path(model_path), precision))
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        specs = {n: TensorSpec(n, tuple(None if d < 0 else d for d in self._engine.get_tensor_shape(n)),
                               np.dtype(trt.nptype(self._engine.get_tensor_dtype(n)))) for n in names}
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [specs[n] for n in names if is_input[n]]
        self._outputs = [specs[n] for n in names if not is_input[n]]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    @property
    def version(self) -> str:
        return trt.__version__

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(cudart.cudaFree(ptr))
            ptr = _check(cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in self._inputs:
            array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
            self._context.set_input_shape(spec.name, array.shape)
            ptr = self._device_buffer(spec.name, array.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, h2d, self._stream))
            self._context.set_tensor_address(spec.name, ptr)
        results = {}
        for spec in self._outputs:
            out = np.empty(tuple(self._context.get_tensor_shape(spec.name)), dtype=spec.dtype)
            self._context.set_tensor_address(spec.name, self._device_buffer(spec.name, out.nbytes))
            results[spec.name] = out
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execution failed")
        for name, out in results.items():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return results

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        cudart.cudaStreamDestroy(self._stream)
