"""tools/baseline.py: the single compressed model on the plan's fastest device, within CoFormer's time."""

from __future__ import annotations

from cofc.compiler.plan import load_plan
from tests.helpers import REPO, load_tool

baseline = load_tool("baseline")


def test_the_baseline_plan_is_the_fastest_device_alone_with_a_deadline(tmp_path):
    plan = load_plan(REPO / "examples" / "minilm_20ng.yaml")
    single = baseline.baseline_plan(plan, 6.876, tmp_path)
    fast = next(d for d in plan.devices if d.name == "fast")  # the 0.8-core device of the three
    assert [d.name for d in single.devices] == ["fast"] and single.devices[0].central
    assert single.devices[0].max_mflops == fast.max_mflops  # the device's own cap, no FLOPs guess
    assert single.objective.max_ms == 6.88 and single.objective.delta < 1e-3
    assert (single.calibration, single.dataset, single.teacher) == (plan.calibration, plan.dataset, plan.teacher)
    assert single.output == tmp_path and single.name == f"{plan.name}-single"


def test_a_single_model_within_five_percent_of_coformer_is_kept():
    assert baseline.retimed_deadline(6.15, target_ms=6.15, measured_ms=6.28) is None  # 2% slower
    assert baseline.retimed_deadline(6.15, target_ms=6.15, measured_ms=5.90) is None  # 4% faster


def test_a_single_model_that_measured_slow_or_fast_is_rebuilt_with_the_deadline_scaled():
    # the stronger teacher's case: predicted within 6.88 ms, measured 8.68 ms against CoFormer's 6.88 ms
    assert baseline.retimed_deadline(6.88, target_ms=6.88, measured_ms=8.68) == 5.45  # 6.88 · 6.88 / 8.68
    assert baseline.retimed_deadline(5.0, target_ms=6.0, measured_ms=5.0) == 6.0  # too fast: more time
