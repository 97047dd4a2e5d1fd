"""tools/quant_schemes.py on the session's INT8 build: FP32 first, then each scheme, every graph
quantized from the build's stored calibration inputs and timed."""

from __future__ import annotations

from tests.helpers import load_tool


def test_schemes_are_measured_against_fp32(built):
    tool = load_tool("quant_schemes")
    rows = tool.measure(built, 60)
    assert [r.scheme for r in rows] == ["FP32", *(str(s) for s in tool.SCHEMES)]
    for r in rows:
        assert 0 <= r.fused_accuracy <= 1 and 0 <= r.teacher_accuracy <= 1
        assert set(r.ms) == {"orin", "tx2", "nano", "aggregator", "teacher"} and min(r.ms.values()) > 0
    assert len(tool.markdown(rows).splitlines()) == 2 + len(rows)
