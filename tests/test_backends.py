"""One conformance suite for every backend: ONNX Runtime here; TensorRT wherever it imports."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cofc.runtime.backends import BACKENDS, available, open_backend
from cofc.errors import CofcError

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


@pytest.fixture(scope="module")
def affine_onnx(tmp_path_factory):
    """y = x·W + b with a dynamic batch axis: small enough to know the answer exactly."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")])
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
    with pytest.raises(Exception):
        backend.run({"x": np.zeros((2, 5), np.float32)})


def test_unknown_backend_is_named():
    with pytest.raises(CofcError, match="unknown backend"):
        open_backend("openvino", "x.onnx")
