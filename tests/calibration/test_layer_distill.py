"""Layer-wise hidden-state distillation: each sub-model block is compared with the teacher block it
was cut from, on the sub-model's channels."""

from __future__ import annotations

import numpy as np
import torch

from cofc.compiler.calibration.layer_distill import teacher_targets, with_layer_distill
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.decompose import cut
from cofc.compiler.planning.slices import WeightSlices
from tests.helpers import raw_inputs, small_record


def no_loss(adapter):
    """A base loss of zero that runs the model once, as every real loss does, so that what
    `with_layer_distill` returns is its own term alone."""
    return lambda model, x, y, targets: adapter.logits(model, x).sum(-1) * 0.0


def setup(family: str, slices_of):
    torch.manual_seed(0)
    adapter = get_adapter(family)
    record = small_record(family)
    teacher = adapter.build_teacher(record).eval()
    x = adapter.preprocess(record, raw_inputs(family, n=3))
    slices = slices_of(adapter.spec(teacher))
    (student,) = cut(adapter, teacher, [slices])
    targets = teacher_targets(adapter, teacher, x, range(adapter.spec(teacher).layers))
    return adapter, teacher, student, slices, x, targets


def test_the_whole_teacher_has_no_hidden_state_error(family):
    """A sub-model that takes everything is the teacher: every block matches its target (up to
    the targets' fp16 storage), in every family, whatever its blocks return."""
    adapter, _, student, slices, x, targets = setup(family, WeightSlices.full)
    term = with_layer_distill(adapter, slices, 1.0, no_loss(adapter))(student, x, torch.zeros(3), targets)
    assert term.shape == (3,)
    torch.testing.assert_close(term, torch.zeros(3), atol=1e-5, rtol=0)


def test_each_block_is_compared_with_the_teacher_block_it_was_cut_from():
    """Keep teacher layers 0 and 2 whole: block 0 is the teacher's block 0 exactly, and block 1
    applies teacher block 2 to block 0's output, so the term is β/2 times block 1's normalised
    error against teacher block 2's output, computed here by running timm's blocks by hand."""

    def layers_0_and_2(base):
        return WeightSlices(
            (0, 2), tuple(range(base.dim)), (tuple(range(base.heads)),) * 2, (tuple(range(base.mlp)),) * 2
        )

    adapter, teacher, student, slices, x, targets = setup("vit", layers_0_and_2)
    beta = 3.0
    term = with_layer_distill(adapter, slices, beta, no_loss(adapter))(student, x, torch.zeros(3), targets)
    with torch.no_grad():
        h = teacher.norm_pre(teacher._pos_embed(teacher.patch_embed(x["pixel_values"])))
        h0 = teacher.blocks[0](h)
        h2 = teacher.blocks[2](teacher.blocks[1](h0))
        skipped = teacher.blocks[2](h0)
    error = ((skipped - h2) ** 2).sum((1, 2)) / (h2**2).sum((1, 2))
    assert (error > 1e-3).all()  # skipping layer 1 does change the output
    np.testing.assert_allclose(term.detach().numpy(), beta / 2 * error.numpy(), rtol=1e-3)
    term.sum().backward()  # the error reaches the first block through its output
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_a_channel_subset_is_compared_on_its_own_channels():
    """A sub-model with half the channels is compared only on those: its targets are the teacher's
    block outputs on them, so the term is finite and does not count the channels it lacks."""

    def half_channels(base):
        return WeightSlices(
            tuple(range(base.layers)),
            tuple(range(0, base.dim, 2)),
            (tuple(range(base.heads)),) * base.layers,
            (tuple(range(base.mlp)),) * base.layers,
        )

    adapter, _, student, slices, x, targets = setup("vit", half_channels)
    term = with_layer_distill(adapter, slices, 1.0, no_loss(adapter))(student, x, torch.zeros(3), targets)
    assert torch.isfinite(term).all() and (term > 0).all()
