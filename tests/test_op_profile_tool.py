"""tools/op_profile.py on the session's build: ONNX Runtime's profiler, per operator type, for a
graph and its INT8 twin, each kernel counted once per request."""

from __future__ import annotations

import onnx

from cofc.compiler.export.quantize import quantize_graph, stored_calibration
from tests.helpers import load_tool


def test_each_request_runs_every_quantized_matmul_once(built, tmp_path):
    tool = load_tool("op_profile")
    graph = built / "onnx" / "orin.onnx"
    feeds = stored_calibration(graph)
    twin = quantize_graph(graph, feeds, out=tmp_path / "orin.int8.onnx")
    in_file = sum(n.op_type == "QLinearMatMul" for n in onnx.load(str(twin)).graph.node)
    fp32, int8 = (tool.kernel_us(g, feeds, 5, tmp_path) for g in (graph, twin))
    assert in_file and round(int8[1]["QLinearMatMul"]) == in_file and fp32[1]["QLinearMatMul"] == 0
    assert fp32[0]["MatMul"] > 0 and int8[0]["QLinearMatMul"] > 0
    lines = tool.table("orin", {"FP32": fp32, "INT8": int8}, 4).splitlines()
    assert lines[2] == "| operator | FP32 µs | FP32 nodes | INT8 µs | INT8 nodes |" and len(lines) == 4 + 4 + 1
