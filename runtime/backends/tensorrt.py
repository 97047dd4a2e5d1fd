"""TensorRT: the backend of a Jetson or any NVIDIA GPU, through the public TensorRT 10 API and
cuda-python. Imported only where `tensorrt` is installed; nothing on the CPU path touches it.

Engines are specific to the GPU, the TensorRT version and the precision, so they are built here,
from the bundle's ONNX, on first use, and cached in the `engines/` folder beside it (which the
bundle's hash check leaves out) under a name that says all three
(`<stem>.<precision>.trt<version>.sm<major><minor>.engine`) with a sidecar JSON holding the
ONNX's sha256. An engine whose sidecar does not match the ONNX in hand is rebuilt, never loaded.

INT8 uses the entropy calibrator (IInt8EntropyCalibrator2) over the calibration inputs the build
stored beside the ONNX (`_calibration.py`), and keeps its calibration cache with the engines,
named by the sha256 of the ONNX and of those inputs, so a rebuild for another GPU skips the
calibration pass and a changed graph or data set never reuses a stale cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt

try:  # cuda-python >= 12.6 moved the runtime bindings
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python
    from cuda import cudart

from cofc.runtime._files import atomic_write, sha256_file
from cofc.runtime.backends._base import Backend, TensorSpec
from cofc.runtime.backends._calibration import CalibrationBatches, calibration_path
from cofc.runtime.bundle import ENGINES

_LOGGER = trt.Logger(trt.Logger.WARNING)
PRECISIONS = ("fp32", "fp16", "int8")
MAX_BATCH = 8  # engines take a dynamic batch of 1..MAX_BATCH requests
# Layers that overflow or lose accuracy in FP16 inside transformers: keep them in FP32.
_FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")


def _check(result: Any) -> Any:
    """The values of a cuda-python call (untyped) that returns (error, *values); RuntimeError on an error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability(device: int = 0) -> str:
    props = _check(cudart.cudaGetDeviceProperties(device))
    return f"{props.major}{props.minor}"


def _cache_dir(onnx_path: Path) -> Path:
    """The folder of built engines and caches: `engines/` beside the ONNX."""
    folder = onnx_path.parent / ENGINES
    folder.mkdir(exist_ok=True)
    return folder


def engine_path(onnx_path: Path, precision: str) -> Path:
    return _cache_dir(onnx_path) / (
        f"{onnx_path.stem}.{precision}.trt{trt.__version__}.sm{compute_capability()}.engine"
    )


class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
    """Feeds the stored calibration batches to the builder, and reads and writes its cache."""

    def __init__(self, batches: CalibrationBatches, cache: Path):
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.batches, self.cache = batches, cache
        self._pending = iter(batches)
        self._buffers: dict[str, int] = {}

    def get_batch_size(self) -> int:
        return self.batches.batch

    def get_batch(self, names: list[str]) -> list[int] | None:
        feeds = next(self._pending, None)
        if feeds is None:
            return None
        pointers = []
        for name in names:
            array = feeds[name]
            if name not in self._buffers:  # every batch has the same size
                self._buffers[name] = _check(cudart.cudaMalloc(array.nbytes))
            _check(
                cudart.cudaMemcpy(
                    self._buffers[name], array.ctypes.data, array.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                )
            )
            pointers.append(int(self._buffers[name]))
        return pointers

    def read_calibration_cache(self) -> bytes | None:
        return self.cache.read_bytes() if self.cache.exists() else None

    def write_calibration_cache(self, cache: Any) -> None:  # a TensorRT buffer
        atomic_write(self.cache, bytes(cache))

    def free(self) -> None:
        for ptr in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()


def calibration_cache_path(onnx_path: Path) -> Path:
    """The INT8 calibration cache of this graph and its calibration inputs (any GPU may reuse it)."""
    digest = sha256_file(onnx_path)[:12] + sha256_file(calibration_path(onnx_path))[:12]
    return _cache_dir(onnx_path) / f"{onnx_path.stem}.int8.{digest}.trt{trt.__version__}.calib"


def _keep_fp32(network: Any) -> None:  # tensorrt.INetworkDefinition (untyped)
    """Pin LayerNorm, softmax and reductions to FP32: they overflow in FP16 inside transformers."""
    keep = {getattr(trt.LayerType, t) for t in _FP32_LAYER_TYPES if hasattr(trt.LayerType, t)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in keep:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)


def _batch_profile(builder: Any, network: Any, low: int, opt: int, high: int) -> Any:
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (low, *rest), (opt, *rest), (high, *rest))
    return profile


def build_engine(
    onnx_path: Path,
    precision: str,
    max_batch: int = MAX_BATCH,
    workspace_mb: int = 1024,
    timing_cache: Path | None = None,
) -> bytes:
    """Parse the ONNX and build a serialized engine with a dynamic batch of 1..max_batch.

    fp16 and int8 both keep the overflow-prone layers in FP32; int8 lets TensorRT fall back to
    FP16 where a layer has no INT8 kernel, and calibrates on the stored inputs."""
    builder = trt.Builder(_LOGGER)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    calibrator = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _keep_fp32(network)
    config.add_optimization_profile(_batch_profile(builder, network, 1, 1, max_batch))
    if precision == "int8":
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        batches = CalibrationBatches(calibration_path(onnx_path), names)
        calibrator = EntropyCalibrator(batches, calibration_cache_path(onnx_path))
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(_batch_profile(builder, network, batches.batch, batches.batch, batches.batch))
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    if timing_cache is not None:
        atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def load_or_build(onnx_path: Path, precision: str) -> bytes:
    """The cached engine for this ONNX, GPU and TensorRT version, rebuilt when stale or foreign."""
    path = engine_path(onnx_path, precision)
    sidecar = path.with_suffix(".json")
    want = {
        "onnx_sha256": sha256_file(onnx_path),
        "precision": precision,
        "tensorrt": trt.__version__,
        "compute_capability": compute_capability(),
        "batch": [1, MAX_BATCH],
    }
    if precision == "int8":
        want["calibration_sha256"] = sha256_file(calibration_path(onnx_path))
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == want:
        return path.read_bytes()
    engine = build_engine(onnx_path, precision, timing_cache=_cache_dir(onnx_path) / "timing.cache")
    atomic_write(path, engine)
    atomic_write(sidecar, json.dumps(want, indent=2).encode())
    return engine


class TensorRTBackend(Backend):
    """One engine with its execution context, CUDA stream and device buffers, all released by
    `close()` once the stream is idle: the context, then the buffers and the stream (cuda-python),
    then the engine and the runtime. TensorRT 10 objects have no destroy(): dropping the last
    reference frees them, so each is dropped after what depends on it."""

    name = "tensorrt"

    def __init__(self, model_path: str | Path, precision: str = "fp32"):
        super().__init__(model_path)
        self.precision = precision
        self._runtime = trt.Runtime(_LOGGER)
        self._engine = self._runtime.deserialize_cuda_engine(load_or_build(self.model_path, precision))
        if self._engine is None:
            raise RuntimeError(f"TensorRT cannot deserialize the engine built from {self.model_path}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"TensorRT cannot create an execution context for {self.model_path}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        specs = {
            n: TensorSpec(
                n,
                tuple(None if d < 0 else d for d in self._engine.get_tensor_shape(n)),
                np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))),
            )
            for n in names
        }
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [specs[n] for n in names if is_input[n]]
        self._outputs = [specs[n] for n in names if not is_input[n]]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._stream = _check(cudart.cudaStreamCreate())  # last: nothing after it can fail

    @property
    def version(self) -> str:
        return str(trt.__version__)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(cudart.cudaFree(ptr))
                del self._buffers[name]
            ptr = _check(cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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

    def _release(self) -> None:
        _check(cudart.cudaStreamSynchronize(self._stream))  # nothing in flight uses what is freed
        self._context = None  # before the buffers its tensor addresses point into
        for ptr, _ in self._buffers.values():
            _check(cudart.cudaFree(ptr))
        self._buffers.clear()
        _check(cudart.cudaStreamDestroy(self._stream))
        self._engine = None  # after its context
        self._runtime = None  # after its engine
