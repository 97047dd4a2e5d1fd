"""The validation-loss proxy of eq. 7: a head refitted on sub-model features."""
from __future__ import annotations

import numpy as np
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.planning.spec import SubModelSpec
from cofc.compiler.scoring.importance import rank_units
from cofc.compiler.scoring.proxy import ValidationLoss, refit_head_loss

from tests.helpers import small_record


def test_refitted_head_scores_informative_features_far_better_than_noise():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=gen)
    informative = torch.nn.functional.one_hot(labels, 4).float() + 0.3 * torch.randn(400, 4, generator=gen)
    noise = torch.randn(400, 4, generator=gen)
    assert refit_head_loss(informative, labels, 4) < 0.5 < 1.2 < refit_head_loss(noise, labels, 4)


def test_validation_loss_of_a_policy_is_finite_and_cached():
    torch.manual_seed(0)
    record = small_record("vit")
    teacher = Teacher("vit", get_adapter("vit").build_teacher(record).eval(), record)
    images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    data = Split(images, np.random.default_rng(1).integers(0, 5, size=64))
    proxy = ValidationLoss(teacher, rank_units(teacher, data, batch=32), data, "pool")
    small = (SubModelSpec(1, 16, (1,), (8,)),)
    first = proxy(small)
    assert np.isfinite(first) and proxy(small) == first and len(proxy.cache) == 1
