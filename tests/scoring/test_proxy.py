"""The validation-loss proxy of eq. 7: a head refitted on sub-model features."""

from __future__ import annotations

import numpy as np
import torch

from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.planning.spec import SubModelSpec
from cofc.compiler.scoring.importance import RANKING_SAMPLES, rank_units, ranking_samples
from cofc.compiler.scoring.proxy import ValidationLoss, refit_head_loss
from tests.helpers import small_record


def test_refitted_head_scores_informative_features_far_better_than_noise():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=gen)
    informative = torch.nn.functional.one_hot(labels, 4).float() + 0.3 * torch.randn(400, 4, generator=gen)
    noise = torch.randn(400, 4, generator=gen)
    assert refit_head_loss(informative, labels, 4) < 0.5 < 1.2 < refit_head_loss(noise, labels, 4)


def test_refitted_head_is_not_fooled_by_samples_sorted_by_class():
    # Files such as 20 Newsgroups' list their samples class by class: a head fitted on the first
    # half would never see the later classes and score informative features as noise.
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=gen).sort().values
    informative = torch.nn.functional.one_hot(labels, 4).float() + 0.3 * torch.randn(400, 4, generator=gen)
    assert refit_head_loss(informative, labels, 4) < 0.5


def test_units_are_ranked_on_samples_of_every_class():
    sorted_by_class = Split([f"text {i}" for i in range(5000)], np.repeat(np.arange(20), 250))
    chosen = ranking_samples(sorted_by_class, seed=0)
    assert len(chosen) == RANKING_SAMPLES and set(chosen.labels) == set(range(20))
    assert np.bincount(chosen.labels).min() > 0.5 * RANKING_SAMPLES / 20


def test_validation_loss_of_a_policy_is_finite_and_cached():
    torch.manual_seed(0)
    record = small_record("vit")
    teacher = Teacher.from_record(record)
    images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    data = Split(images, np.random.default_rng(1).integers(0, 5, size=64))
    proxy = ValidationLoss(teacher, rank_units(teacher, data, batch=32), data, "pool")
    small = (SubModelSpec(1, 16, (1,), (8,)),)
    first = proxy(small)
    assert np.isfinite(first) and proxy(small) == first and len(proxy.cache) == 1
