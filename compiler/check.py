"""`cofc build --check`: load a plan, its teacher and its data, check that they fit together,
and say what the compiler will work with (the first stage of every build)."""
from __future__ import annotations

from pathlib import Path

from cofc.compiler.adapters import get_adapter
from cofc.compiler.datasets import load_dataset
from cofc.compiler.metrics import accuracy
from cofc.compiler.plan import check_against_teacher, load_plan
from cofc.compiler.spec import flops, memory_bytes, parameters
from cofc.compiler.teacher import teacher_from_plan


def check_plan(plan_path: Path, measure: bool) -> str:
    """Validate the plan against its teacher and data set; return a readable summary."""
    plan = load_plan(plan_path)
    teacher = teacher_from_plan(plan)
    spec = get_adapter(teacher.family).spec(teacher.model)
    check_against_teacher(plan, spec)
    data = load_dataset(plan.dataset.name)
    if len(data.classes) != teacher.num_classes:
        raise plan.error("dataset.name", f"{plan.dataset.name} has {len(data.classes)} classes, "
                         f"the teacher's head has {teacher.num_classes}")
    if plan.dataset.calibration + plan.dataset.validation > len(data.train):
        raise plan.error("dataset.calibration", f"calibration + validation samples exceed the "
                         f"{len(data.train)} training samples of {plan.dataset.name}")
    full = spec.full()
    lines = [
        f"plan {plan.name}: {len(plan.devices)} devices, central {plan.central.name}",
        f"teacher {teacher.family}: L={spec.layers} d={spec.dim} h={spec.heads} D={spec.mlp} "
        f"S={spec.tokens}, {parameters(full, spec) / 1e6:.2f} M params, "
        f"{flops(full, spec) / 1e6:.1f} MFLOPs/request, {memory_bytes(full, spec) / 2 ** 20:.1f} MB",
        f"dataset {data.name}: {len(data.train)} train, {len(data.test)} test, {len(data.classes)} classes",
    ]
    for d in plan.devices:
        lines.append(f"  device {d.name}: {d.memory_mb} MB, {d.max_mflops} MFLOPs, "
                     f"{d.link_mbps} Mb/s{' (central)' if d.central else ''}, profile {d.profile}")
    if measure:
        test = data.test.take(plan.dataset.test)
        acc = accuracy(get_adapter(teacher.family), teacher.model, teacher.record, test.inputs,
                       test.labels, desc="teacher on the test split")
        lines.append(f"teacher accuracy on {len(test)} test samples: {acc:.4f}")
    return "\n".join(lines)
