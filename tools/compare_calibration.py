"""Compare calibration variants on a built plan's chosen policy (same teacher, data, importance,
decomposition and budgets; one setting changes at a time), measured on the plan's test split:

  reading      eq. 13 as printed (down-weights high-loss samples) vs the boosting reading (up-weights)
  feature      the device's vector: the family's pooling of final tokens (eq. 2) vs the first token
  soft_labels  eq. 14 alone (0) vs eq. 14 plus the soft-label term (1)
  joint_lr     the joint fine-tuning's peak learning rate: 5e-4 vs 1.5e-3
  weight_decay AdamW's weight decay in boosting and joint fine-tuning: 0.05 vs 0
  layer_distill  boosting on eq. 14 alone (0) vs with each block's hidden-state error to its teacher block (1)
  held_out_fusion  the final aggregator fitted on training images held out from calibration (true) vs
               every non-validation image calibrating and fitting it (false)

  python tools/compare_calibration.py examples/vit_fashion_mnist.yaml --build build/vit

`--seeds 1,2` reruns the plan's own settings with other seeds (the build used objective.seed):
how far apart two runs of the same settings land, which a variant's difference has to beat.
`--epochs 5,10` reruns them with other boosting epoch counts (`calibration.epochs`): run on a
cluster's build and on its single-model baseline's (`cofc baseline`), it shows whether a longer
calibration budget widens or closes the gap between them. `--device cuda` runs the torch work on a
GPU, as `cofc build --device` does.

Results are merged into BUILD/compare.json by variant name, so `--variants` can add one later.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from cofc.compiler.calibration.accuracy import AccuracyReport, accuracy_report
from cofc.compiler.calibration.calibrate import CalibrationConfig, calibrate
from cofc.compiler.models.torch_device import describe, resolve
from cofc.compiler.pipeline.cache import read_stored
from cofc.compiler.pipeline.stages import SearchSummary
from cofc.compiler.plan import CalibrationPlan
from cofc.compiler.plan.prepare import prepare
from cofc.compiler.plan.schema import SCHEMA
from cofc.compiler.planning.slices import Importance
from cofc.errors import CofcError
from cofc.runtime._files import atomic_write_json
from cofc.runtime._typed_json import from_json, to_json

# Each variant changes one setting from the plan's: to this value, or, where the plan already
# sets it, back to the schema's default. The plan's own result is the build's.
VARIANTS = {
    "reading": "printed",
    "feature": "first",
    "soft_labels": 1.0,
    "joint_lr": 1.5e-3,
    "weight_decay": 0.0,
    "layer_distill": 1.0,
    "held_out_fusion": False,
}


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # the key in compare.json: every VARIANTS setting, then what else differs from the plan
    calibration: CalibrationPlan
    seed: int


def name_of(c: CalibrationPlan) -> str:
    return " ".join(f"{k}={getattr(c, k)}" for k in VARIANTS)


def runs(
    planned: CalibrationPlan, plan_seed: int, settings: list[str], seeds: list[int], epochs: list[int]
) -> list[Run]:
    """What to calibrate: each setting flipped alone (to VARIANTS' value, or back to the schema's
    default where the plan sets that value), then the plan's settings at each other seed, then at
    each other boosting epoch count."""
    out = []
    for setting in settings:
        default = SCHEMA["calibration"][setting].default
        change = dataclasses.replace(
            planned, **{setting: VARIANTS[setting] if getattr(planned, setting) == default else default}
        )
        out.append(Run(name_of(change), change, plan_seed))
    out += [Run(f"{name_of(planned)} seed={seed}", planned, seed) for seed in seeds]
    out += [Run(f"{name_of(planned)} epochs={n}", dataclasses.replace(planned, epochs=n), plan_seed) for n in epochs]
    return out


def _integers(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s]
    except ValueError:
        parser.error(f"{flag} must be integers separated by commas, not {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--build", type=Path, required=True, help="a finished `cofc build` folder of this plan")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: BUILD/compare.json)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="settings to vary, comma-separated ('' for none)"
    )
    parser.add_argument(
        "--seeds",
        default="",
        help="also rerun the plan's own settings with these seeds (comma-separated): the "
        "spread between runs that a variant's difference has to beat",
    )
    parser.add_argument(
        "--epochs",
        default="",
        help="also rerun the plan's own settings with these boosting epoch counts (comma-separated)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the torch work runs, as `cofc build --device` (auto: CUDA where torch sees one)",
    )
    args = parser.parse_args()
    settings = [v for v in args.variants.split(",") if v]
    if unknown := [v for v in settings if v not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    seeds, epochs = _integers(parser, "--seeds", args.seeds), _integers(parser, "--epochs", args.epochs)
    if any(n < 1 for n in epochs):
        parser.error(f"--epochs must be at least 1, not {args.epochs!r}")
    try:
        device = resolve(args.device)
    except CofcError as exc:
        parser.error(str(exc))
    prepared = prepare(args.plan)
    plan = prepared.plan

    def stage(name: str, kind: type):
        return from_json(kind, read_stored(args.build / "stages" / f"{name}.json").result)

    importance = stage("importance", Importance)
    policy = stage("search", SearchSummary).policy
    test = prepared.splits()[3]
    planned = plan.calibration

    def show(name: str, r: AccuracyReport) -> None:
        print(
            f"{name:45s} fused {r.fused:.4f}  average {r.average:.4f}  best single "
            f"{max(r.submodels):.4f}  worst one-missing {min(r.missing):.4f}",
            flush=True,
        )

    out = args.out or args.build / "compare.json"
    results = json.loads(out.read_text())["results"] if out.exists() else {}
    built = stage("calibrate", AccuracyReport)
    results[f"{name_of(planned)} (the build)"] = to_json(built)
    show(f"{name_of(planned)} (the build)", built)

    def save() -> None:
        """Atomically, after every run: the file merges hours of runs, which a crash later in
        this one or a torn write would otherwise lose."""
        atomic_write_json(out, {"plan": str(args.plan), "teacher": built.teacher, "results": results})

    save()

    for run in runs(planned, plan.objective.seed, settings, seeds, epochs):
        start = time.time()
        # held_out_fusion decides which images calibrate, so they follow the variant's settings
        train, fusion = dataclasses.replace(
            prepared, plan=dataclasses.replace(plan, calibration=run.calibration)
        ).calibration_sets()
        calibrated = calibrate(
            prepared.teacher,
            policy,
            importance,
            train,
            CalibrationConfig.from_plan(run.calibration, run.seed),
            fusion,
            device=device,
        )
        report = accuracy_report(prepared.teacher, calibrated, test, device=device)
        results[run.name] = to_json(report) | {
            "calibration_seconds": round(time.time() - start, 1),
            "torch_device": describe(device),
        }
        show(run.name, report)
        save()
    print(f"teacher {built.teacher:.4f}; written {out}")


if __name__ == "__main__":
    main()
