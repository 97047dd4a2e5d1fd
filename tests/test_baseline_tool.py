"""tools/baseline.py sizes the single compressed model by inverting the fastest device's table."""
from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("baseline_tool", REPO / "tools" / "baseline.py")
baseline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baseline)


def test_flops_for_a_target_latency_inverts_the_tables_line():
    # 1 ms fixed + 2 ms per GFLOP, measured exactly: 5 ms allows 2 GFLOPs.
    table = {"rows": [{"flops": f, "ms": 1 + 2e-9 * f} for f in (1e8, 5e8, 1e9, 3e9)]}
    assert baseline.flops_for_ms(table, 5.0) == pytest.approx(2e9)
    assert isinstance(baseline.flops_for_ms(table, 5.0), float)  # written into YAML as a plain number
