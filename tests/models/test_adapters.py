"""Adapters: ragged sub-models for every family, and weight slicing that is exact."""
from __future__ import annotations

import pytest
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, parameters

from tests.helpers import raw_inputs, small_record


def _teacher(family: str):
    torch.manual_seed(0)
    adapter = get_adapter(family)
    record = small_record(family)
    return adapter, adapter.build_teacher(record).eval(), record


RAGGED = SubModelSpec(layers=2, dim=48, heads=(1, 4), mlp=(7, 150))


def test_ragged_submodel_builds_and_runs(family):
    adapter, teacher, record = _teacher(family)
    student = adapter.build_submodel(teacher, RAGGED).eval()
    x = adapter.preprocess(record, raw_inputs(family))
    tokens = adapter.token_features(student, x)
    assert tokens.shape[0] == 3 and tokens.shape[-1] == RAGGED.dim
    assert adapter.logits(student, x).shape == (3, 5)
    # The built model has exactly the shape the spec describes.
    assert sum(p.numel() for p in student.parameters()) == parameters(RAGGED, adapter.spec(teacher))


def test_full_slice_reproduces_teacher(family):
    adapter, teacher, record = _teacher(family)
    full = WeightSlices.full(adapter.spec(teacher))
    student = adapter.build_submodel(teacher, full.spec).eval()
    adapter.copy_slices(teacher, student, full)
    x = adapter.preprocess(record, raw_inputs(family))
    with torch.no_grad():
        torch.testing.assert_close(adapter.token_features(student, x),
                                   adapter.token_features(teacher, x), atol=1e-5, rtol=0)
        torch.testing.assert_close(adapter.logits(student, x), adapter.logits(teacher, x),
                                   atol=1e-5, rtol=0)


def test_partial_slice_takes_the_named_weights(family):
    """Dropping channels, heads and neurons must keep exactly the teacher's entries they name:
    recompute one head's attention output projection and one MLP neuron by hand."""
    adapter, teacher, _ = _teacher(family)
    slices = WeightSlices(layers=(2, 0), channels=tuple(range(1, 96, 2)),
                          heads=((5,), (0, 3)), neurons=((0, 9, 100), (191,)))
    student = adapter.build_submodel(teacher, slices.spec)
    adapter.copy_slices(teacher, student, slices)
    t, s = teacher.state_dict(), student.state_dict()
    names = {"vit": ("blocks.{}.mlp.fc1.weight", False), "bert":
             ("backbone.encoder.layer.{}.intermediate.dense.weight", False),
             "gpt2": ("backbone.h.{}.mlp.c_fc.weight", True)}
    name, transposed = names[family]
    tw, sw = t[name.format(2)], s[name.format(0)]
    if transposed:  # GPT2's Conv1D stores (in, out)
        tw, sw = tw.T, sw.T
    torch.testing.assert_close(sw, tw[[0, 9, 100]][:, list(range(1, 96, 2))], atol=0, rtol=0)


def test_unknown_parameter_is_an_error_not_a_guess():
    adapter = get_adapter("vit")
    with pytest.raises(KeyError, match="no slicing rule"):
        adapter.roles_of("blocks.0.attn.some_new_projection.weight")
