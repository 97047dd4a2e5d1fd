"""`cofc build --check`: say what a build would work with, and how fast its devices could answer
at best, before the hours a build takes: the plan, teacher and data checked together, each
device's budgets and its floor (the fastest sub-model the search could give it), the speed-up
that floor allows, and the teacher's accuracy on the test split."""

from __future__ import annotations

from pathlib import Path

from cofc.compiler.models.metrics import accuracy
from cofc.compiler.pipeline.context import Context
from cofc.compiler.plan.prepare import prepare
from cofc.compiler.planning.floor import fastest_answer
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import flops, memory_bytes, parameters


def check_plan(plan_path: Path) -> str:
    """Validate the plan against its teacher and data set; return a readable summary."""
    prepared = prepare(plan_path)
    ctx = Context(prepared, Path(prepared.plan.output))
    plan, teacher, spec, data = prepared.plan, prepared.teacher, prepared.base, prepared.data
    full = spec.full()
    lines = [
        f"plan {plan.name}: {len(plan.devices)} devices, central {plan.central.name}",
        f"teacher {teacher.family}: L={spec.layers} d={spec.dim} h={spec.heads} D={spec.mlp} "
        f"S={spec.tokens}, {parameters(full, spec) / 1e6:.2f} M params, "
        f"{flops(full, spec) / 1e6:.1f} MFLOPs/request, {memory_bytes(full, spec) / 2**20:.1f} MB",
        f"dataset {data.name}: {len(data.train)} train, {len(data.test)} test, {len(data.classes)} classes",
    ]
    for d in plan.devices:
        lines.append(
            f"  device {d.name}: {d.memory_mb} MB, {d.max_mflops} MFLOPs, "
            f"{d.link_mbps} Mb/s{' (central)' if d.central else ''}, profile {d.profile}"
        )
    floor = fastest_answer(SearchSpace(spec, len(ctx.devices), plan.objective.min_layers), ctx.devices, ctx.input_bytes)
    if floor is None:
        lines.append("some device can run no sub-model within its memory_mb and max_mflops")
    else:
        lines += [f"  {d}" for d in floor.devices] + [f"predicted: {floor}"]
    test = ctx.test
    lines.append(
        f"teacher accuracy on {len(test)} test samples: {accuracy(teacher, test, desc='teacher on the test split'):.4f}"
    )
    return "\n".join(lines)
