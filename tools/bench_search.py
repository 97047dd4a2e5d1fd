"""Benchmark the decomposition search on a plan: DeBo with the plan's budget (r + I_s) against
random search with 10× that budget, and uniform decomposition. Prints the best objective of
each and DeBo's gap to random's best, measured in one run; saves the convergence plot.

  python tools/bench_search.py examples/vit_fashion_mnist.yaml --out build/bench_search.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cofc.compiler.pipeline.context import Context
from cofc.compiler.pipeline.plots import plot_search
from cofc.compiler.plan.prepare import prepare
from cofc.compiler.planning.objective import Evaluator
from cofc.compiler.planning.search import SearchSpace, debo, random_search, uniform_search
from cofc.compiler.scoring.importance import rank_units, ranking_samples
from cofc.compiler.scoring.proxy import ValidationLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--random-factor", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("build/bench_search.png"))
    args = parser.parse_args()
    ctx = Context(prepare(args.plan), args.out.parent)
    plan, base = ctx.plan, ctx.base
    importance = rank_units(ctx.teacher, ranking_samples(ctx.cal, ctx.plan.objective.seed))
    proxy = ValidationLoss(ctx.teacher, importance, ctx.val, plan.calibration.feature)
    evaluator = Evaluator(ctx.devices, base, proxy, plan.objective.delta, ctx.input_bytes)
    space = SearchSpace(base, len(plan.devices), plan.objective.min_layers)
    budget = plan.objective.initial + plan.objective.iterations
    seed = plan.objective.seed
    timings = {}
    start = time.time()
    results = {"debo": debo(space, evaluator, plan.objective.initial, plan.objective.iterations, seed)}
    timings["debo"] = time.time() - start
    start = time.time()
    results["random"] = random_search(space, evaluator, budget * args.random_factor, seed + 1)
    timings["random"] = time.time() - start
    results["uniform"] = uniform_search(space, evaluator)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_search(results, args.out)
    best = {k: r.best.objective for k, r in results.items() if r.history}
    gap = (best["debo"] - best["random"]) / abs(best["random"])
    print(f"plan {plan.name}: {len(plan.devices)} devices, δ = {plan.objective.delta}")
    for name, r in results.items():
        extra = f" in {timings[name]:.0f} s" if name in timings else ""
        print(f"  {name:8s} {len(r.history):4d} evaluations{extra}: best Ψ = {best.get(name, float('nan')):.4f}")
    print(
        f"DeBo ({budget} evaluations) vs random ({budget * args.random_factor}): "
        f"{100 * gap:+.2f}% ({'within' if gap <= 0.02 else 'NOT within'} 2%)"
    )
    print(f"DeBo vs uniform: {100 * (best['debo'] - best['uniform']) / abs(best['uniform']):+.2f}%")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
