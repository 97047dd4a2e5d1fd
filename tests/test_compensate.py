"""Bias compensation: each cut layer gives the teacher's output when what it dropped sits at its mean."""
from __future__ import annotations

import re

import torch

from cofc.compiler.adapters import get_adapter
from cofc.compiler.adapters._base import ALL, role_index, teacher_name
from cofc.compiler.calibrate import preprocess_all
from cofc.compiler.compensate import _input_axis, compensate, input_means
from cofc.compiler.decompose import decompose, plan_slices
from cofc.compiler.spec import SubModelSpec

from conftest import raw_inputs, small_record
from test_decompose import random_importance


def _teacher(family: str):
    torch.manual_seed(0)
    adapter = get_adapter(family)
    record = small_record(family)
    teacher = adapter.build_teacher(record).eval()
    inputs = preprocess_all(adapter, record, raw_inputs(family, n=6))
    return adapter, teacher, inputs


def test_full_policy_is_left_as_the_teacher(family):
    adapter, teacher, inputs = _teacher(family)
    means = input_means(adapter, teacher, inputs)
    assert means  # every family has linear layers with biases
    imp = random_importance(layers=3)
    (student,) = decompose(adapter, teacher, [adapter.spec(teacher).full()], imp, means)
    with torch.no_grad():
        torch.testing.assert_close(adapter.logits(student, inputs), adapter.logits(teacher, inputs),
                                   atol=1e-5, rtol=0)


def test_cut_layers_match_the_teacher_with_dropped_inputs_at_their_mean(family):
    """For every compensated layer: teacher(x with dropped entries = their mean)[kept outputs]
    equals the sub-model's layer on x[kept inputs]; without compensation it does not."""
    adapter, teacher, inputs = _teacher(family)
    means = input_means(adapter, teacher, inputs)
    policy = [SubModelSpec(2, 32, (3, 3), (96, 96)), SubModelSpec(3, 32, (3, 3, 3), (96, 96, 96))]
    imp = random_importance(layers=3)
    block = re.compile(adapter.block_pattern)
    teacher_modules = dict(teacher.named_modules())
    checked = 0
    for slices in plan_slices(policy, imp):
        plain = adapter.build_submodel(teacher, slices.spec)
        adapter.copy_slices(teacher, plain, slices)
        student = adapter.build_submodel(teacher, slices.spec)
        adapter.copy_slices(teacher, student, slices)
        compensate(adapter, teacher, student, slices, means)
        plain_modules = dict(plain.named_modules())
        for name, module in student.named_modules():
            axis = _input_axis(module)
            if axis is None:
                continue
            roles = adapter.roles_of(f"{name}.weight")
            if roles[axis] is ALL:
                continue
            source = teacher_name(f"{name}.weight", block, slices)[:-len(".weight")]
            match = block.search(f"{name}.weight")
            layer = int(match.group(1)) if match else None
            base = adapter.spec(teacher)
            kept_in = torch.as_tensor(role_index(roles[axis], layer, slices, base))
            outputs = (slice(None) if roles[1 - axis] is ALL
                       else torch.as_tensor(role_index(roles[1 - axis], layer, slices, base)))
            x = means[source].repeat(5, 1)
            x[:, kept_in] = torch.randn(5, len(kept_in))
            with torch.no_grad():
                want = teacher_modules[source](x)[:, outputs]
                torch.testing.assert_close(module(x[:, kept_in]), want, atol=1e-4, rtol=1e-4)
                assert not torch.allclose(plain_modules[name](x[:, kept_in]), want, atol=1e-3)
            checked += 1
    assert checked >= 10


def test_means_are_the_mean_inputs():
    """The ViT head's input is the normed pooled feature; its mean is what input_means reports,
    whatever the batch size."""
    adapter, teacher, inputs = _teacher("vit")
    with torch.no_grad():
        pooled = teacher.fc_norm(adapter.pool(teacher, adapter.token_features(teacher, inputs), inputs))
    for batch in (1, 4, 256):
        torch.testing.assert_close(input_means(adapter, teacher, inputs, batch=batch)["head"], pooled.mean(0),
                                   atol=1e-5, rtol=0)
