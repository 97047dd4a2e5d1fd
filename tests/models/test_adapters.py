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
        torch.testing.assert_close(
            adapter.token_features(student, x), adapter.token_features(teacher, x), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(adapter.logits(student, x), adapter.logits(teacher, x), atol=1e-5, rtol=0)


# Where each family keeps block k's attention and MLP weights. "qkv" is one fused (3·h·hd, d)
# projection, q|k|v one after another; GPT2's Conv1D stores its weights transposed, (in, out).
LAYOUT = {
    "vit": dict(
        qkv=["blocks.{}.attn.qkv"],
        out="blocks.{}.attn.proj",
        up="blocks.{}.mlp.fc1",
        down="blocks.{}.mlp.fc2",
        conv1d=False,
    ),
    "bert": dict(
        qkv=[f"backbone.encoder.layer.{{}}.attention.self.{p}" for p in ("query", "key", "value")],
        out="backbone.encoder.layer.{}.attention.output.dense",
        up="backbone.encoder.layer.{}.intermediate.dense",
        down="backbone.encoder.layer.{}.output.dense",
        conv1d=False,
    ),
    "gpt2": dict(
        qkv=["backbone.h.{}.attn.c_attn"],
        out="backbone.h.{}.attn.c_proj",
        up="backbone.h.{}.mlp.c_fc",
        down="backbone.h.{}.mlp.c_proj",
        conv1d=True,
    ),
}
HEAD_DIM = 16  # small_record: 96 channels, 6 heads


def _linear(state: dict, name: str, layer: int, conv1d: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight as (out, in) and bias of one linear layer of block `layer`."""
    weight = state[name.format(layer) + ".weight"]
    return (weight.T if conv1d else weight), state[name.format(layer) + ".bias"]


def _both(teacher: dict, student: dict, layout: dict, part: str, layer: int, i: int):
    """`part` of teacher block `layer` and of sub-model block `i`, each as (weight (out, in), bias)."""
    return (
        _linear(teacher, layout[part], layer, layout["conv1d"]),
        _linear(student, layout[part], i, layout["conv1d"]),
    )


def _q_k_v(state: dict, layout: dict, layer: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias) of Q, K and V, cut out of the fused projection where there is one."""
    parts = [_linear(state, name, layer, layout["conv1d"]) for name in layout["qkv"]]
    if len(parts) == 3:
        return parts
    ((weight, bias),) = parts
    width = len(bias) // 3
    return [(weight[i * width : (i + 1) * width], bias[i * width : (i + 1) * width]) for i in range(3)]


def test_a_subset_of_heads_takes_exactly_those_heads_weights(family):
    """Sub-model layer i keeps heads (1, 4) of teacher layer 2 and heads (0, 3, 5) of teacher
    layer 0, every other channel, and a few neurons: its Q, K and V rows (and biases) must be
    the teacher's rows of those heads, its output projection's columns the teacher's columns of
    those heads, and its MLP the teacher's rows and columns of those neurons, all restricted to
    the kept channels. Teacher indices are worked out here from head × head_dim."""
    adapter, teacher, _ = _teacher(family)
    with torch.no_grad():  # initialisers zero the biases: give every entry its own value
        for p in teacher.parameters():
            p.normal_()
    channels = list(range(1, 96, 2))
    slices = WeightSlices(
        layers=(2, 0), channels=tuple(channels), heads=((1, 4), (0, 3, 5)), neurons=((0, 9, 100), (7, 191))
    )
    student = adapter.build_submodel(teacher, slices.spec)
    adapter.copy_slices(teacher, student, slices)
    t, s, layout = teacher.state_dict(), student.state_dict(), LAYOUT[family]
    exact = dict(atol=0, rtol=0)
    for i, (layer, heads, neurons) in enumerate(zip(slices.layers, slices.heads, slices.neurons, strict=True)):
        rows = [h * HEAD_DIM + j for h in heads for j in range(HEAD_DIM)]
        for (tw, tb), (sw, sb) in zip(_q_k_v(t, layout, layer), _q_k_v(s, layout, i), strict=True):
            torch.testing.assert_close(sw, tw[rows][:, channels], **exact)
            torch.testing.assert_close(sb, tb[rows], **exact)
        (tw, tb), (sw, sb) = _both(t, s, layout, "out", layer, i)
        torch.testing.assert_close(sw, tw[channels][:, rows], **exact)
        torch.testing.assert_close(sb, tb[channels], **exact)
        (tw, tb), (sw, sb) = _both(t, s, layout, "up", layer, i)
        torch.testing.assert_close(sw, tw[list(neurons)][:, channels], **exact)
        torch.testing.assert_close(sb, tb[list(neurons)], **exact)
        (tw, _), (sw, _) = _both(t, s, layout, "down", layer, i)
        torch.testing.assert_close(sw, tw[channels][:, list(neurons)], **exact)


def test_unknown_parameter_is_an_error_not_a_guess():
    adapter = get_adapter("vit")
    with pytest.raises(KeyError, match="no slicing rule"):
        adapter.roles_of("blocks.0.attn.some_new_projection.weight")
