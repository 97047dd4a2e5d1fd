"""Load a plan, its teacher and its data, and check that they fit together: what every stage of
a build starts from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cofc.compiler.models.data import load_data
from cofc.compiler.models.datasets import Dataset, Split
from cofc.compiler.models.teacher import Teacher, teacher_from_plan
from cofc.compiler.plan import Plan, check_against_teacher, load_plan
from cofc.compiler.plan.loader import DATA_SOURCES
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import DataError


@dataclass
class Prepared:
    """A plan checked against its teacher and data set: what every stage starts from."""

    plan: Plan
    teacher: Teacher
    base: TransformerSpec  # the teacher's spec, read once
    data: Dataset

    def splits(self) -> tuple[Split, Split, Split, Split]:
        """Calibration, validation and fusion samples (disjoint, from the training split; fusion
        is what is left, up to as many as calibration, or all of it when no fusion split is held
        out) and test samples."""
        d, seed = self.plan.dataset, self.plan.objective.seed
        rest = len(self.data.train) - d.calibration - d.validation
        fusion = min(d.calibration, rest) if self.plan.calibration.held_out_fusion else rest
        cal, val, fus = self.data.train.partition([d.calibration, d.validation, fusion], seed)
        return cal, val, fus, self.data.test.take(d.test)

    def calibration_sets(self) -> tuple[Split, Split | None]:
        """What calibrates the sub-models, and what fits the final aggregator (None: the same).

        Held out (the default), the fusion split fits the aggregator and nothing else (stacked
        generalisation, compiler/calibrate.py). Without it, every training image outside
        validation calibrates: the calibration split, which alone ranks units, plus the rest.
        The calibration and validation splits are the same either way, so the importance
        ranking and the search do not change with this choice."""
        cal, _, fusion, _ = self.splits()
        if self.plan.calibration.held_out_fusion:
            return cal, (fusion if len(fusion) else None)
        return cal + fusion, None


def prepare(plan_path: Path, precision: str | None = None) -> Prepared:
    """Load the plan, its teacher and data; refuse (PlanError) what does not fit together.
    `precision` overrides the plan's export.precision (`cofc build --precision`: one plan file
    for an FP32 build and its INT8 twin)."""
    plan = load_plan(plan_path)
    if precision is not None:
        plan = dataclasses.replace(plan, export=dataclasses.replace(plan.export, precision=precision))
    teacher = teacher_from_plan(plan)
    base = teacher.spec
    check_against_teacher(plan, base)
    data = _data(plan, teacher)
    if plan.dataset.calibration + plan.dataset.validation > len(data.train):
        raise plan.error(
            "dataset.calibration",
            f"calibration + validation samples exceed the {len(data.train)} training samples of {data.name}",
        )
    return Prepared(plan, teacher, base, data)


def _data(plan: Plan, teacher: Teacher) -> Dataset:
    """The plan's data set, labelled in the teacher's class order; a PlanError at the dataset's
    source field when it is not data this teacher can take (the message names the file)."""
    source = next(k for k in DATA_SOURCES if getattr(plan.dataset, k) is not None)
    expects = teacher.expects
    try:
        data = load_data(plan.dataset, expects)
    except DataError as exc:
        raise plan.error(f"dataset.{source}", str(exc)) from None
    if data.kind != expects.kind:
        raise plan.error(
            f"dataset.{source}", f"{data.name} holds {data.kind}s; the teacher ({teacher.family}) takes {expects.kind}s"
        )
    if len(data.classes) != teacher.num_classes:
        raise plan.error(
            f"dataset.{source}",
            f"{data.name} has {len(data.classes)} classes, the teacher's head has {teacher.num_classes}",
        )
    return data
