"""The honest baseline for a benchmarked CoFormer build (issue #17, item 4): the single compressed
model a user would otherwise deploy. One sub-model of the same teacher, on the fastest device of
the plan alone, sized so that it is predicted to answer as fast as CoFormer's *measured* end-to-end
median, and calibrated with the same budget (the same plan, one device, δ ≈ 0 so that the search
takes the most accurate sub-model under that size).

  cofc bench build/minilm-20ng --emulate -n 7528      # CoFormer, measured
  python tools/baseline.py build/minilm-20ng           # writes and builds build/minilm-20ng/baseline.yaml
  cofc bench build/minilm-20ng-single --emulate -n 7528

The size: a least-squares line of the fastest device's latency table (measured ms on FLOPs),
inverted at CoFormer's median; the plan's `max_mflops` is that many MFLOPs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from cofc.compiler.build.report import PLAN_COPY
from cofc.compiler.cluster.bench import table_cpu_limit
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import Plan, plan_yaml


NO_LATENCY_WEIGHT = 1e-6  # δ must be positive; this small, Ψ ranks by the proxy's loss alone


def flops_for_ms(table: dict, target_ms: float) -> float:
    """The FLOPs a sub-model may have to take `target_ms` on the table's device."""
    flops = np.array([row["flops"] for row in table["rows"]], dtype=float)
    ms = np.array([row["ms"] for row in table["rows"]], dtype=float)
    slope, intercept = np.polyfit(flops, ms, 1)
    return float((target_ms - intercept) / slope)


def baseline_plan(plan: Plan, target_ms: float, out: Path) -> tuple[Plan, float]:
    """The one-device plan on the plan's fastest device, and its FLOPs cap in MFLOPs."""
    fastest = max(plan.devices, key=lambda d: table_cpu_limit(d.profile).share)
    cap = flops_for_ms(json.loads(fastest.profile.read_text()), target_ms) / 1e6
    device = dataclasses.replace(fastest, central=True, max_mflops=round(cap, 1))
    return dataclasses.replace(plan, name=f"{plan.name}-single", devices=(device,), output=out,
                               objective=dataclasses.replace(plan.objective, delta=NO_LATENCY_WEIGHT)), cap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", type=Path, help="a CoFormer build folder with its bench.json")
    args = parser.parse_args()
    bench = json.loads((args.build_dir / "bench.json").read_text())
    plan = load_plan(args.build_dir / PLAN_COPY)
    target = bench["end_to_end_ms"]["median"]
    out = args.build_dir.with_name(args.build_dir.name + "-single")
    single, cap = baseline_plan(plan, target, out.resolve())
    path = args.build_dir / "baseline.yaml"
    path.write_text(plan_yaml(single))
    print(f"CoFormer measured {target:.2f} ms end to end: the single model on {single.devices[0].name} "
          f"gets at most {cap:.0f} MFLOPs -> {path}")

    from cofc.compiler.build.pipeline import build

    report = build(path, None, False)
    print(f"single compressed model: fused {report.fused.accuracy:.4f} (ONNX Runtime), "
          f"predicted {report.fused.predicted_ms:.2f} ms; CoFormer through the runtime {bench['accuracy']:.4f}, "
          f"teacher {report.teacher.accuracy:.4f}")


if __name__ == "__main__":
    main()
