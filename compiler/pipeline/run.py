"""`cofc build`: run the stages in order, each reused from OUT/stages/ while what it reads is
unchanged (cache.py), then write the report. `force` reruns every stage; `device` is where their
torch work runs (torch_device.py); `precision` overrides the plan's export.precision."""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any

import torch

from cofc.compiler.models.adapters import adapter_module
from cofc.compiler.models.torch_device import CPU
from cofc.compiler.pipeline.cache import StageCache, Stored
from cofc.compiler.pipeline.context import Context, log
from cofc.compiler.pipeline.report import PLAN_COPY, Report, make_report, write_report
from cofc.compiler.pipeline.stages import STAGES, Built, Stage, skipped
from cofc.compiler.plan import plan_yaml
from cofc.compiler.plan.prepare import prepare
from cofc.runtime._files import atomic_write
from cofc.runtime._typed_json import from_json, to_json


def build(
    plan_path: Path,
    out: Path | None = None,
    force: bool = False,
    device: torch.device = CPU,
    precision: str | None = None,
) -> Report:
    prepared = prepare(plan_path, precision)
    out = Path(out or prepared.plan.output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / PLAN_COPY, plan_yaml(prepared.plan).encode())
    ctx = Context(prepared, out, device)
    cache = StageCache(out / "stages", force)
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for stage in STAGES:
        if why := skipped(stage):
            log(why)
            continue
        results[stage.name], seconds[stage.name] = _run(stage, ctx, cache, results)
    built = Built(**{f.name: results[f.name] for f in dataclasses.fields(Built)})
    report = make_report(ctx, built, seconds)
    write_report(out, report)
    return report


def _run(stage: Stage, ctx: Context, cache: StageCache, results: dict[str, Any]) -> tuple[Any, float]:
    """A stage's result: stored, if it ran under the same key and its files are there; else run now."""
    reads = dataclasses.replace(stage.reads, code=(*stage.reads.code, adapter_module(ctx.teacher.family)))
    key = ctx.keys[stage.name] = cache.key(ctx.plan, reads, ctx.keys, inspect.getsource(stage.run), ctx.device.type)
    stored = cache.load(stage.name, key)
    if stored is not None and all((ctx.out / o).exists() for o in stage.outputs):
        log(f"stage {stage.name}: unchanged, reusing {cache.path(stage.name)}")
        return from_json(stage.result_type, stored.result), stored.seconds
    log(f"stage {stage.name} ...")
    start = time.time()
    torch.manual_seed(ctx.plan.objective.seed)  # each stage from the same state, however many were reused
    result = stage.run(ctx, *(results[s] for s in stage.reads.stages))
    seconds = round(time.time() - start, 1)
    cache.save(stage.name, Stored(key, seconds, to_json(result)))
    return result, seconds
