"""Compare calibration variants on a built plan's chosen policy (same teacher, data, importance,
decomposition and budgets; one setting changes at a time), measured on the plan's test split:

  reading  eq. 13 as printed (down-weights high-loss samples) vs the boosting reading (up-weights)
  feature  the device's vector: the family's pooling of final tokens (eq. 2) vs the first token

  python tools/compare_calibration.py examples/vit_fashion_mnist.yaml --build build/vit
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from cofc.compiler.booster import TrainConfig
from cofc.compiler.calibrate import CalibrationConfig, accuracy_report, calibrate
from cofc.compiler.check import prepare
from cofc.compiler.importance import Importance
from cofc.compiler.spec import SubModelSpec

# Each variant changes one setting from the plan's; the plan's own result is the build's.
VARIANTS = {"reading": ("up", "printed"), "feature": ("pool", "first")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--build", type=Path, required=True, help="a finished `cofc build` folder of this plan")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: BUILD/compare.json)")
    args = parser.parse_args()
    prepared = prepare(args.plan)
    plan, teacher, adapter = prepared.plan, prepared.teacher, prepared.adapter
    stage = lambda name: json.loads((args.build / "stages" / f"{name}.json").read_text())["result"]  # noqa: E731
    importance = Importance.from_dict(stage("importance"))
    policy = tuple(SubModelSpec.from_dict(s) for s in stage("search")["policy"])
    cal, _, fusion, test = prepared.splits()
    c = plan.calibration
    base = CalibrationConfig(drop=c.feature_dropout, boost=TrainConfig(epochs=c.epochs),
                             joint=TrainConfig(epochs=c.joint_epochs, lr=5e-4) if c.joint_epochs else None,
                             seed=plan.objective.seed)

    def show(name: str, r: dict) -> None:
        print(f"{name:30s} fused {r['fused']:.4f}  average {r['average']:.4f}  best single "
              f"{max(r['submodels']):.4f}  worst one-missing {min(r['missing']):.4f}", flush=True)

    planned = {"reading": c.reading, "feature": c.feature}
    results = {f"reading={c.reading} feature={c.feature} (the build)": stage("calibrate")}
    show(*next(iter(results.items())))
    for setting, choices in VARIANTS.items():
        other = next(v for v in choices if v != planned[setting])
        change = {**planned, setting: other}
        name = f"reading={change['reading']} feature={change['feature']}"
        start = time.time()
        calibrated = calibrate(adapter, teacher.model, teacher.record, policy, importance, cal.inputs,
                               cal.labels, dataclasses.replace(base, **change),
                               (fusion.inputs, fusion.labels) if len(fusion) else None)
        results[name] = accuracy_report(adapter, teacher.model, teacher.record, calibrated, test.inputs, test.labels)
        results[name]["calibration_seconds"] = round(time.time() - start, 1)
        show(name, results[name])
    out = args.out or args.build / "compare.json"
    out.write_text(json.dumps({"plan": str(args.plan), "teacher": results[next(iter(results))]["teacher"],
                               "results": results}, indent=1))
    print(f"teacher {results[next(iter(results))]['teacher']:.4f}; written {out}")


if __name__ == "__main__":
    main()
