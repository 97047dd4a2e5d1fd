"""One conformance suite for every backend: ONNX Runtime here; TensorRT wherever it imports."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cofc.errors import CofcError
from cofc.runtime.backends import BACKENDS, BackendClosedError, available, open_backend
from cofc.runtime.backends._calibration import CalibrationBatches, calibration_path, save_calibration

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


@pytest.fixture(scope="module")
def affine_onnx(tmp_path_factory):
    """y = x·W + b with a dynamic batch axis: small enough to know the answer exactly."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    path = tmp_path_factory.mktemp("onnx") / "affine.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _backend(name, path):
    if name not in available():
        pytest.skip(f"backend {name} is not available on this machine (its Python package does not import)")
    return open_backend(name, path)


@pytest.mark.parametrize("name", BACKENDS)
def test_describes_inputs_and_outputs(name, affine_onnx):
    backend = _backend(name, affine_onnx)
    (x,), (y,) = backend.inputs, backend.outputs
    assert (x.name, x.shape, x.dtype) == ("x", (None, 4), np.float32)
    assert (y.name, y.shape, y.dtype) == ("y", (None, 3), np.float32)
    assert backend.version


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_runs_with_any_batch(name, batch, affine_onnx):
    backend = _backend(name, affine_onnx)
    x = RNG.standard_normal((batch, 4)).astype(np.float32)
    out = backend.run({"x": x})
    assert set(out) == {"y"}
    np.testing.assert_allclose(out["y"], x @ W + B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_wrong_shape_is_an_error(name, affine_onnx):
    backend = _backend(name, affine_onnx)
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):  # each backend's own error type
        backend.run({"x": np.zeros((2, 5), np.float32)})


@pytest.mark.parametrize("name", BACKENDS)
def test_closed_backend_refuses_to_run(name, affine_onnx):
    """`with` releases the session or engine (and TensorRT's buffers and stream) on the way out;
    running afterwards is a clear error, not a use of freed memory, and closing twice is harmless."""
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    with _backend(name, affine_onnx) as backend:
        np.testing.assert_allclose(backend.run({"x": x})["y"], x @ W + B, rtol=1e-5, atol=1e-5)
    assert backend.closed
    with pytest.raises(BackendClosedError, match="affine.onnx is closed"):
        backend.run({"x": x})
    backend.close()


def test_unknown_backend_is_named():
    with pytest.raises(CofcError, match="unknown backend"):
        open_backend("openvino", "x.onnx")


def test_calibration_batches_are_fixed_size_and_named(affine_onnx, tmp_path):
    graph = tmp_path / affine_onnx.name
    graph.write_bytes(affine_onnx.read_bytes())
    x = RNG.standard_normal((70, 4)).astype(np.float32)
    assert save_calibration(graph, {"x": x}) == tmp_path / "affine.calib.npz"
    batches = CalibrationBatches(calibration_path(graph), ["x"], batch=32)
    got = list(batches)
    assert len(got) == len(batches) == 2 and all(b["x"].shape == (32, 4) for b in got)  # the last 6 dropped
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in got]), x[:64])
    with pytest.raises(CofcError, match="lacks calibration inputs for mask"):
        CalibrationBatches(calibration_path(graph), ["x", "mask"])
    with pytest.raises(CofcError, match="other.calib.npz is missing"):
        CalibrationBatches(calibration_path(tmp_path / "other.onnx"), ["x"])


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_reduced_precision_stays_close_and_caches(precision, affine_onnx, tmp_path):
    """FP16 and INT8 (entropy-calibrated on stored inputs) engines agree with the exact answer to
    within their precision, and land in engines/ with a sidecar; INT8 leaves a calibration cache."""
    if "tensorrt" not in available():
        pytest.skip("TensorRT does not import on this machine (no tensorrt/cuda-python): engines cannot be built")
    graph = tmp_path / affine_onnx.name
    graph.write_bytes(affine_onnx.read_bytes())
    save_calibration(graph, {"x": RNG.standard_normal((256, 4)).astype(np.float32)})
    backend = open_backend("tensorrt", graph, precision=precision)
    x = RNG.standard_normal((8, 4)).astype(np.float32)
    np.testing.assert_allclose(backend.run({"x": x})["y"], x @ W + B, atol=0.1 if precision == "int8" else 1e-2)
    engines = {p.suffix for p in (tmp_path / "engines").iterdir()}
    assert {".engine", ".json"} <= engines and (".calib" in engines) == (precision == "int8")
