"""Decomposition end to end: a sub-model that takes everything is the teacher; device features."""

from __future__ import annotations

import numpy as np
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.decompose import decompose
from cofc.compiler.models.fusion import device_feature
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.scoring.importance import rank_units
from tests.helpers import raw_inputs, small_record


def test_giving_everything_to_one_submodel_reproduces_the_teacher(family):
    torch.manual_seed(0)
    record = small_record(family)
    teacher = Teacher.from_record(record)
    data = Split(raw_inputs(family, n=4), np.array([0, 1, 2, 3]))
    imp = rank_units(teacher, data, batch=2)
    assert imp.heads.shape == (3, 6) and imp.neurons.shape == (3, 192) and (imp.heads > 0).all()
    (student,) = decompose(teacher.adapter, teacher.model, [teacher.spec.full()], imp)
    x = teacher.preprocess(data.inputs)
    with torch.no_grad():
        torch.testing.assert_close(
            teacher.adapter.token_features(student, x),
            teacher.adapter.token_features(teacher.model, x),
            atol=1e-5,
            rtol=0,
        )


def test_device_feature_kinds(family):
    adapter = get_adapter(family)
    record = small_record(family)
    model = adapter.build_teacher(record).eval()
    x = adapter.preprocess(record, raw_inputs(family))
    with torch.no_grad():
        tokens = adapter.token_features(model, x)
        torch.testing.assert_close(device_feature(adapter, model, x, "first"), tokens[:, 0])
        torch.testing.assert_close(device_feature(adapter, model, x, "pool"), adapter.pool(model, tokens, x))
