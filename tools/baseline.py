"""The honest baseline for a benchmarked CoFormer build (issue #17, item 4): the single compressed
model a user would otherwise deploy. One sub-model of the same teacher, on the fastest device of
the plan alone, that is predicted to answer as fast as CoFormer's *measured* end-to-end median,
and calibrated with the same budget (the same plan, one device, δ ≈ 0 so that the search takes
the most accurate sub-model within that time).

  cofc bench build/minilm-20ng --emulate -n 7528      # CoFormer, measured
  python tools/baseline.py build/minilm-20ng           # writes and builds build/minilm-20ng/baseline.yaml
  cofc bench build/minilm-20ng-single --emulate -n 7528

The time limit is the plan's `objective.max_ms`, a deadline on the search's predicted T (eq. 3):
the search screens sub-models by the same latency model that planned the cluster. (An earlier
version capped FLOPs where a straight line through the device's table reaches that time: a cap
that admits sub-models slower than the time, and keeps out faster ones with more FLOPs, since
the tables make heads dearer than their FLOPs.)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from cofc.compiler.build.report import PLAN_COPY
from cofc.compiler.cluster.bench import table_cpu_limit
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import Plan, plan_yaml


NO_LATENCY_WEIGHT = 1e-6  # δ must be positive; this small, Ψ ranks by the proxy's loss alone


def baseline_plan(plan: Plan, target_ms: float, out: Path) -> Plan:
    """The one-device plan on the plan's fastest device, with a deadline of `target_ms`."""
    fastest = max(plan.devices, key=lambda d: table_cpu_limit(d.profile).share)
    objective = dataclasses.replace(plan.objective, delta=NO_LATENCY_WEIGHT, max_ms=round(target_ms, 2))
    return dataclasses.replace(plan, name=f"{plan.name}-single", devices=(dataclasses.replace(fastest, central=True),),
                               output=out, objective=objective)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", type=Path, help="a CoFormer build folder with its bench.json")
    args = parser.parse_args()
    bench = json.loads((args.build_dir / "bench.json").read_text())
    plan = load_plan(args.build_dir / PLAN_COPY)
    target = bench["end_to_end_ms"]["median"]
    out = args.build_dir.with_name(args.build_dir.name + "-single")
    single = baseline_plan(plan, target, out.resolve())
    path = args.build_dir / "baseline.yaml"
    path.write_text(plan_yaml(single))
    print(f"CoFormer measured {target:.2f} ms end to end: the single model on {single.devices[0].name} "
          f"must be predicted within {single.objective.max_ms:g} ms -> {path}")

    from cofc.compiler.build.pipeline import build

    report = build(path, None, False)
    print(f"single compressed model: fused {report.fused.accuracy:.4f} (ONNX Runtime), "
          f"predicted {report.fused.predicted_ms:.2f} ms; CoFormer through the runtime {bench['accuracy']:.4f}, "
          f"teacher {report.teacher.accuracy:.4f}")


if __name__ == "__main__":
    main()
