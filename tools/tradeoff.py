"""The trade-off table (the paper's Table V and Fig. 12 in miniature): variants of one plan, each
built and measured through the runtime, side by side.

  python tools/tradeoff.py examples/minilm_20ng_quick.yaml --vary ship=debo,uniform --emulate
  python tools/tradeoff.py examples/minilm_20ng_quick.yaml --vary devices=2 --vary link_mbps=10 --vary delta=0.02,0.2

Each `--vary AXIS=V1,V2,...` adds one variant per value to the plan as it is, one axis at a time
(not their product). Axes:
  devices    the plan's central device and its first N-1 workers; beyond the plan's devices,
             copies of its last worker (same table and link)
  link_mbps  every device's link rate
  delta      objective.delta (Ψ = L_val + δ·T)
  ship       whose best policy is calibrated and shipped: debo, uniform or random
Every variant is built into OUT/<variant>/ (default: build/tradeoff-<plan name>) and benched by
`cofc bench` (with --emulate, as root: the plan's link rates and the tables' CPU shares). The table,
printed and written to OUT/tradeoff.json, has each variant's accuracy through the runtime and its
end-to-end median against the teacher alone on the fastest device, both from its own bench run.
A rerun reuses what a variant's build folder already holds, and keeps the rows of variants it
does not run again, so the table can grow one axis at a time. `--no-plan` leaves the plan's own
row out, for a plan whose build is benched already (a flagship's hour is not spent twice).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cofc.compiler.cluster.bench_result import BenchResult
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import DevicePlan, Plan, plan_yaml

AXES = ("devices", "link_mbps", "delta", "ship")


@dataclass(frozen=True)
class Variant:
    axis: str | None  # None: the plan as it is
    value: str | None

    @property
    def name(self) -> str:
        return "plan" if self.axis is None else f"{self.axis}-{self.value}"


def variants(axes: list[tuple[str, list[str]]], with_plan: bool = True) -> list[Variant]:
    """The plan itself (unless left out), then one variant per axis value, in the order given."""
    plan = [Variant(None, None)] if with_plan else []
    return plan + [Variant(axis, value) for axis, values in axes for value in values]


def extra_workers(workers: list[DevicePlan], count: int) -> list[DevicePlan]:
    """`count` more devices like the plan's last worker (same table, link and limits), named
    `<its name>-2`, `-3`, ...: a larger cluster out of measured tables only."""
    return [dataclasses.replace(workers[-1], name=f"{workers[-1].name}-{k}") for k in range(2, count + 2)]


def apply(plan: Plan, variant: Variant, out: Path) -> Plan:
    """The plan with the variant's one change, building into `out`."""
    changed = dataclasses.replace(plan, name=f"{plan.name}-{variant.name}", output=out)
    if variant.axis == "devices":
        n = int(variant.value)
        central = [d for d in plan.devices if d.central]
        workers = [d for d in plan.devices if not d.central]
        if n < 1 or (n > len(plan.devices) and not workers):
            raise ValueError(
                f"devices={n}: expected 1 to {len(plan.devices)}, or more when the plan has a worker to copy"
            )
        kept = central + workers[: n - 1]
        return dataclasses.replace(changed, devices=tuple(kept + extra_workers(workers, n - len(plan.devices))))
    if variant.axis == "link_mbps":
        return dataclasses.replace(
            changed, devices=tuple(dataclasses.replace(d, link_mbps=float(variant.value)) for d in plan.devices)
        )
    if variant.axis in ("delta", "ship"):
        value = float(variant.value) if variant.axis == "delta" else variant.value
        return dataclasses.replace(changed, objective=dataclasses.replace(plan.objective, **{variant.axis: value}))
    return changed


def parse_vary(text: str) -> tuple[str, list[str]]:
    axis, _, values = text.partition("=")
    if axis not in AXES or not values:
        raise argparse.ArgumentTypeError(f"expected AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}")
    return axis, values.split(",")


def row(variant: Variant, plan: Plan, report: Any, bench: BenchResult) -> dict[str, Any]:
    return {
        "variant": variant.name,
        "devices": len(plan.devices),
        "link_mbps": [d.link_mbps for d in plan.devices],
        "delta": plan.objective.delta,
        "ship": plan.objective.ship,
        "policy": [d.spec.to_dict() for d in report.devices],
        "teacher_accuracy": report.teacher.accuracy,
        "accuracy": bench.accuracy,
        "requests": bench.requests,
        "end_to_end_ms": bench.end_to_end_ms.median,
        "p90_ms": bench.end_to_end_ms.p90,
        "teacher_ms": bench.teacher.median_ms,
        "speedup": bench.speedup_vs_teacher,
        "emulated": bench.emulated,
    }


def merged(kept: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows with `new` in place of its variant's earlier row, or added at the end."""
    rows = [r for r in kept if r["variant"] != new["variant"]]
    at = next((i for i, r in enumerate(kept) if r["variant"] == new["variant"]), len(kept))
    return rows[:at] + [new] + rows[at:]


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'variant':16s} {'devices':>7s} {'accuracy':>8s} {'teacher':>8s} {'e2e ms':>8s} "
        f"{'teacher ms':>10s} {'speed-up':>8s}"
    ]
    for r in rows:
        lines.append(
            f"{r['variant']:16s} {r['devices']:7d} {100 * r['accuracy']:7.2f}% "
            f"{100 * r['teacher_accuracy']:7.2f}% {r['end_to_end_ms']:8.2f} {r['teacher_ms']:10.2f} "
            f"{r['speedup']:7.2f}×"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--vary", type=parse_vary, action="append", default=[], metavar="AXIS=V1,V2")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("-n", "--requests", type=int, default=500)
    parser.add_argument("--emulate", action="store_true")
    parser.add_argument(
        "--no-plan",
        action="store_true",
        help="leave the plan's own row out (its build is benched already, e.g. a committed flagship)",
    )
    args = parser.parse_args()

    from cofc.compiler.cluster.bench import bench, format_table
    from cofc.compiler.pipeline.run import build
    from cofc.runtime._files import atomic_write_json

    plan = load_plan(args.plan)
    out = (args.out or Path("build") / f"tradeoff-{plan.name}").resolve()
    table = out / "tradeoff.json"
    rows = json.loads(table.read_text())["rows"] if table.is_file() else []
    for variant in variants(args.vary, with_plan=not args.no_plan):
        folder = out / variant.name
        changed = apply(plan, variant, folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = out / f"{variant.name}.yaml"
        path.write_text(plan_yaml(changed))
        print(f"== {variant.name}: building {path}", file=sys.stderr)
        report = build(path, None, False)
        result = bench(folder, args.requests, args.emulate)
        print(format_table(result), file=sys.stderr)
        rows = merged(rows, row(variant, changed, report, result))
        atomic_write_json(table, {"plan": str(args.plan), "rows": rows})
    print(format_rows(rows))
    print(f"written {table}")


if __name__ == "__main__":
    main()
