"""`cofc frontier PLAN --budgets a,b,c`: where collaboration pays (issue #32). For each latency
budget (the plan's `objective.max_ms`, a deadline on eq. 3's predicted T), build CoFormer, bench
it, build and bench its single compressed model at the same measured median (`cofc baseline`), and
keep both points: accuracy against measured end-to-end latency, two curves, with the teacher
alone as the reference point (frontier.json, frontier.png).

Each budget's search weighs latency as the baseline's does (δ ≈ 0): it takes the decomposition
of least validation loss that is predicted within the budget, so that a larger budget buys
accuracy. With the plan's δ, Ψ = L_val + δ·T may settle on the same fast policy at every budget.

Resumable: each budget is a build folder of its own under OUT; a rerun reuses every build stage
whose inputs are unchanged (the pipeline's stage cache, seeded from the plan's own build and
across budgets for the stages that depend on neither devices nor objective), a bench newer than
the bundles it measured, and a single model already benched after it (flagged where its median
stayed more than 5% from CoFormer's)."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path

from cofc.compiler.cluster.baseline import NO_LATENCY_WEIGHT, make_baseline
from cofc.compiler.cluster.bench import bench, format_table
from cofc.compiler.cluster.bench_result import BENCH, BenchResult
from cofc.compiler.cluster.gain import CollaborationGain, single_dir
from cofc.compiler.pipeline.cache import seed_stages
from cofc.compiler.pipeline.context import log
from cofc.compiler.pipeline.plots import plot_frontier
from cofc.compiler.pipeline.report import load_report
from cofc.compiler.pipeline.run import build
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import plan_yaml
from cofc.runtime._files import atomic_write_json
from cofc.runtime._typed_json import from_json, to_json

FRONTIER = "frontier.json"
PLOT = "frontier.png"


@dataclass(frozen=True)
class FrontierRow:
    budget_ms: float  # objective.max_ms of the CoFormer build
    coformer_predicted_ms: float  # eq. 3 from the tables, for each build
    single_predicted_ms: float
    gain: CollaborationGain  # both measured: accuracy and end-to-end median on the same inputs


@dataclass(frozen=True)
class Frontier:
    plan: str
    requests: int
    emulated: bool
    teacher_accuracy: float
    teacher_ms: float  # the teacher alone on the fastest device: median over the rows' bench runs
    rows: tuple[FrontierRow, ...]

    def save(self, out: Path) -> None:
        atomic_write_json(Path(out) / FRONTIER, to_json(self))

    @classmethod
    def load(cls, folder: Path) -> Frontier:
        import json

        return from_json(cls, json.loads((Path(folder) / FRONTIER).read_text()))


def budget_name(budget_ms: float) -> str:
    return f"budget-{budget_ms:g}ms"


def _bench_is_current(build_dir: Path, requests: int, emulate: bool) -> bool:
    """A bench of the bundles as they are now (written after them), of as many inputs, alike."""
    path = build_dir / BENCH
    if not path.is_file():
        return False
    b = BenchResult.load(build_dir)
    bundles = max(f.stat().st_mtime for f in (build_dir / "bundle").rglob("*") if f.is_file())
    return b.requests == requests and (b.emulated or b.note is not None) == emulate and path.stat().st_mtime > bundles


def run_frontier(plan_path: Path, budgets: list[float], requests: int, emulate: bool, out: Path) -> Frontier:
    plan = load_plan(plan_path)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[FrontierRow] = []
    seeds = [Path(plan.output)]  # the plan's own build, where there is one, then the first budget's
    for budget in sorted(budgets):
        name = budget_name(budget)
        folder = (out / name).resolve()
        variant = dataclasses.replace(
            plan,
            name=f"{plan.name}-{budget:g}ms",
            objective=dataclasses.replace(plan.objective, delta=NO_LATENCY_WEIGHT, max_ms=budget),
            output=folder,
        )
        path = out / f"{name}.yaml"
        path.write_text(plan_yaml(variant))
        log(f"frontier: budget {budget:g} ms -> {folder}")
        for seed in seeds:
            if (seed / "stages").is_dir():
                seed_stages(seed, folder)
        seeds.append(folder)
        report = build(path, None, False)
        if _bench_is_current(folder, requests, emulate):
            log(f"frontier: {folder / BENCH} is current, kept")
        else:
            log(format_table(bench(folder, requests, emulate)))
        gain = make_baseline(folder)
        log(f"frontier: budget {budget:g} ms: {gain}")
        single = load_report(single_dir(folder))
        rows.append(FrontierRow(budget, report.fused.predicted_ms, single.fused.predicted_ms, gain))
        frontier = Frontier(
            plan.name,
            gain.requests,
            emulate,
            gain.teacher_accuracy,
            statistics.median(r.gain.teacher_ms for r in rows),
            tuple(rows),
        )
        frontier.save(out)
    plot_frontier(frontier, out / PLOT)
    return frontier
