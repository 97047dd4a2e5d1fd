"""The accuracy report of a calibrated decomposition on a labelled split (torch, in process):
the teacher; each sub-model alone, before and after calibration; the fused model; averaging
and voting the sub-models' logits; the fused model with each one device missing, with the
feature-dropout aggregator and, for contrast, one trained without dropout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cofc.compiler.calibration.calibrate import Calibrated, FusedModel
from cofc.compiler.models.batches import batched, preprocess_all
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.fusion import Aggregator, average_logits, majority_vote, submodel_logits
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU, placed


@dataclass(frozen=True)
class AccuracyReport:
    """Top-1 accuracies as fractions; one entry per device where a tuple."""

    samples: int
    teacher: float
    submodels: tuple[float, ...]
    submodels_uncalibrated: tuple[float, ...]  # empty when not measured
    fused: float
    fused_without_dropout: float
    average: float
    vote: float
    missing: tuple[float, ...]  # fused with that device missing
    missing_without_dropout: tuple[float, ...]


@torch.no_grad()
def accuracy_report(
    teacher: Teacher,
    calibrated: Calibrated,
    split: Split,
    uncalibrated: Sequence[nn.Module] = (),
    device: torch.device = CPU,
) -> AccuracyReport:
    """Every model runs on `device`; the logits and features come back to the CPU, where the
    fusions and the aggregators, small, are applied."""
    with placed(device, teacher.model, *calibrated.submodels, *uncalibrated):
        return _report(teacher, calibrated, split, uncalibrated, device)


def _report(
    teacher: Teacher, calibrated: Calibrated, split: Split, uncalibrated: Sequence[nn.Module], device: torch.device
) -> AccuracyReport:
    adapter, feature = teacher.adapter, calibrated.feature
    inputs = preprocess_all(teacher, split.inputs)
    y = torch.as_tensor(split.labels)
    acc = lambda logits: float((logits.argmax(-1) == y).float().mean())  # noqa: E731
    run = lambda fn: batched(fn, inputs, device=device)  # noqa: E731
    alone = lambda m: run(lambda x: submodel_logits(adapter, m, x, feature))  # noqa: E731
    sub_logits = [alone(m) for m in calibrated.submodels]
    feats = run(FusedModel(adapter, calibrated.submodels, None, feature).features)
    n, devices = len(y), len(calibrated.submodels)

    def fused(agg: Aggregator, missing: int | None = None) -> float:
        mask = torch.ones(n, devices)
        if missing is not None:
            mask[:, missing] = 0.0
        return acc(agg(feats, mask))

    return AccuracyReport(
        samples=n,
        teacher=acc(run(teacher.logits)),
        submodels=tuple(acc(logits) for logits in sub_logits),
        submodels_uncalibrated=tuple(acc(alone(m)) for m in uncalibrated),
        fused=fused(calibrated.aggregator),
        fused_without_dropout=fused(calibrated.plain_aggregator),
        average=acc(average_logits(sub_logits)),
        vote=acc(majority_vote(sub_logits)),
        missing=tuple(fused(calibrated.aggregator, k) for k in range(devices)),
        missing_without_dropout=tuple(fused(calibrated.plain_aggregator, k) for k in range(devices)),
    )
