"""`cofc baseline OUT`: the honest baseline for a benchmarked CoFormer build (issues #17 and #32),
the single compressed model a user would otherwise deploy. One sub-model of the same teacher, on
the plan's fastest device alone, that answers as fast as CoFormer's *measured* end-to-end median,
calibrated with the same budget (the same plan, one device, δ ≈ 0 so that the search takes the
most accurate sub-model within that time). It is built into OUT-single and benched as CoFormer
was, and the collaboration gain (gain.py) is printed and added to OUT/report.md.

The time limit is the plan's `objective.max_ms`, a deadline on the search's predicted T (eq. 3):
the search screens sub-models by the same latency model that planned the cluster. (A FLOPs cap
where a straight line through the device's table reaches that time admits sub-models slower than
the time and keeps out faster ones with more FLOPs, since the tables make heads dearer than their
FLOPs.)

Equal latency is then checked, not assumed: while the single model's measured median misses
CoFormer's by more than 5%, the deadline is scaled by their ratio and the model built again (at
most three builds). A table can be well off for a sparsely sampled shape, and a bench moves
between runs: on the stronger teacher, a single model predicted at 6.61 ms measured 8.68 ms end to
end in one run and 7.41 ms in another, against CoFormer's 6.88 ms.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from cofc.compiler.cluster.bench import bench, table_cpu_limit
from cofc.compiler.cluster.bench_result import BENCH, BenchResult
from cofc.compiler.cluster.gain import EQUAL_LATENCY, CollaborationGain, collaboration_gain, single_dir
from cofc.compiler.pipeline.cache import seed_stages
from cofc.compiler.pipeline.context import device_models, log
from cofc.compiler.pipeline.report import PLAN_COPY, load_report, write_markdown
from cofc.compiler.pipeline.run import build
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import Plan, plan_yaml
from cofc.compiler.planning.floor import fastest_answer
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import CofcError

NO_LATENCY_WEIGHT = 1e-6  # δ must be positive; this small, Ψ ranks by the proxy's loss alone
BUILDS = 3
BASELINE_PLAN = "baseline.yaml"  # in OUT: the single model's plan, as last built


def baseline_plan(plan: Plan, target_ms: float, out: Path) -> Plan:
    """The one-device plan on the plan's fastest device, with a deadline of `target_ms`."""
    fastest = max(plan.devices, key=lambda d: table_cpu_limit(d.profile).share)
    objective = dataclasses.replace(plan.objective, delta=NO_LATENCY_WEIGHT, max_ms=round(target_ms, 2))
    return dataclasses.replace(
        plan,
        name=f"{plan.name}-single",
        devices=(dataclasses.replace(fastest, central=True),),
        output=out,
        objective=objective,
    )


def retimed_deadline(
    deadline_ms: float, target_ms: float, measured_ms: float, tolerance: float = EQUAL_LATENCY
) -> float | None:
    """The next build's deadline, or None when the single model measured within `tolerance` of
    CoFormer's time. A table's error near one shape is close to a constant factor, so scaling the
    deadline by target/measured asks the search for a model that measures at the target."""
    if abs(measured_ms / target_ms - 1.0) <= tolerance:
        return None
    return round(deadline_ms * target_ms / measured_ms, 2)


def floor_ms(single: Plan, base: TransformerSpec) -> float:
    """The soonest the single device answers by its table (eq. 3 for one device, the search's
    floor), rounded up to the 0.01 ms a deadline is written in: a deadline under it finds nothing."""
    floor = fastest_answer(SearchSpace(base, 1, single.objective.min_layers), device_models(single, base))
    if floor is None:
        raise single.error("devices", f"{single.devices[0].name} alone can run no sub-model within its budgets")
    return math.ceil(floor.total_ms * 100) / 100


def _asked_emulation(b: BenchResult) -> bool:
    """Whether a bench was asked to emulate (a refused emulation leaves a note)."""
    return b.emulated or b.note is not None


def _done(build_dir: Path, out: Path, coformer: BenchResult) -> CollaborationGain | None:
    """The gain of a single model benched alike after CoFormer: nothing to redo. One that stayed
    more than 5% from CoFormer's median is kept too, flagged: its builds were already spent on it."""
    bench = out / BENCH
    if not bench.is_file() or bench.stat().st_mtime < (build_dir / BENCH).stat().st_mtime:
        return None
    try:
        return collaboration_gain(coformer, BenchResult.load(out))
    except CofcError:
        return None


def make_baseline(build_dir: Path) -> CollaborationGain:
    """Build and bench the single model of a benched CoFormer build into OUT-single; add the
    gain to OUT/report.md. A single model already benched alike after CoFormer is kept."""
    build_dir = Path(build_dir)
    if not (build_dir / BENCH).is_file():
        raise CofcError(f"{build_dir} has no {BENCH}: run 'cofc bench {build_dir}' first")
    coformer = BenchResult.load(build_dir)
    out = single_dir(build_dir)
    gain = _done(build_dir, out, coformer)
    if gain is not None:
        flag = (
            "" if gain.equal_latency else f", more than {EQUAL_LATENCY:.0%} from CoFormer's median (remove it to retry)"
        )
        log(f"baseline: {out} is benched already{flag}")
    else:
        gain = _build_until_equal(build_dir, out, coformer)
    write_markdown(build_dir, load_report(build_dir), gain)
    return gain


def _build_until_equal(build_dir: Path, out: Path, coformer: BenchResult) -> CollaborationGain:
    plan = load_plan(build_dir / PLAN_COPY)
    target = coformer.end_to_end_ms.median
    path = build_dir / BASELINE_PLAN
    seed_stages(build_dir, out)  # the teacher's accuracy and its importance ranking, computed once
    floor = floor_ms(baseline_plan(plan, target, out), load_report(build_dir).teacher.spec)
    deadline = round(max(target, floor), 2)  # as the plan writes it
    for attempt in range(1, BUILDS + 1):
        single = baseline_plan(plan, deadline, out)
        path.write_text(plan_yaml(single))
        log(
            f"baseline: CoFormer measured {target:.2f} ms end to end. Build {attempt}/{BUILDS}: the single "
            f"model on {single.devices[0].name}, predicted within {single.objective.max_ms:g} ms -> {path}"
        )
        build(path, None, False)
        gain = collaboration_gain(coformer, bench(out, coformer.requests, emulate=_asked_emulation(coformer)))
        log(f"baseline: {gain}")
        retimed = retimed_deadline(deadline, target, gain.single_ms)
        if retimed is None:
            return gain
        if max(retimed, floor) == deadline:
            log(f"baseline: {single.devices[0].name} alone answers no sooner than {floor:g} ms by its table")
            break
        deadline = max(retimed, floor)
    log(
        f"baseline: the single model measured {gain.single_ms:.2f} ms against CoFormer's {target:.2f} ms, "
        f"more than {EQUAL_LATENCY:.0%} apart; {out} holds the last build, and the gain is flagged"
    )
    return gain
