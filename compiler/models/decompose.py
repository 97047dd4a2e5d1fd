"""Carve N sub-models out of a teacher: the planner says which units each one takes
(`planning/slices.py`, paper appendix B1), the family's adapter copies those weights."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cofc.compiler.models.adapters.base import ModelAdapter
from cofc.compiler.planning.slices import Importance, WeightSlices, plan_slices
from cofc.compiler.planning.spec import SubModelSpec


def cut(adapter: ModelAdapter, teacher: nn.Module, slices: Sequence[WeightSlices]) -> list[nn.Module]:
    """One sub-model per `slices`, each holding its slice of the teacher's weights."""
    models = []
    for one in slices:
        model = adapter.build_submodel(teacher, one.spec)
        adapter.copy_slices(teacher, model, one)
        models.append(model.eval())
    return models


def decompose(
    adapter: ModelAdapter, teacher: nn.Module, policy: Sequence[SubModelSpec], importance: Importance
) -> list[nn.Module]:
    """The un-calibrated sub-models of `policy`."""
    return cut(adapter, teacher, plan_slices(policy, importance))
