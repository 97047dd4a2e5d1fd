"""tools/baseline.py: the single compressed model on the plan's fastest device, within CoFormer's time."""
from __future__ import annotations

import importlib.util

from cofc.compiler.plan import load_plan
from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("baseline_tool", REPO / "tools" / "baseline.py")
baseline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baseline)


def test_the_baseline_plan_is_the_fastest_device_alone_with_a_deadline(tmp_path):
    plan = load_plan(REPO / "examples" / "minilm_20ng.yaml")
    single = baseline.baseline_plan(plan, 6.876, tmp_path)
    fast = next(d for d in plan.devices if d.name == "fast")  # the 0.8-core device of the three
    assert [d.name for d in single.devices] == ["fast"] and single.devices[0].central
    assert single.devices[0].max_mflops == fast.max_mflops  # the device's own cap, no FLOPs guess
    assert single.objective.max_ms == 6.88 and single.objective.delta < 1e-3
    assert (single.calibration, single.dataset, single.teacher) == (plan.calibration, plan.dataset, plan.teacher)
    assert single.output == tmp_path and single.name == f"{plan.name}-single"
