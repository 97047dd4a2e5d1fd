"""Progressive boosting: the sample weights of eq. 13 and the distillation loss of eq. 14."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cofc.compiler.calibration.booster import Distill, update_weights


def test_boosting_weights_follow_both_readings_of_eq_13():
    w = np.ones(4)
    losses = np.array([0.0, 0.0, 1.0, 2.0])
    m = 4
    # By hand: w·exp(±(1 − 1/M)·L) = exp(±0.75·L), then divided by its mean.
    up = np.exp(0.75 * losses)
    printed = np.exp(-0.75 * losses)
    np.testing.assert_allclose(update_weights(w, losses, "up", clip=100), up / up.mean())
    np.testing.assert_allclose(update_weights(w, losses, "printed", clip=100), printed / printed.mean())
    assert update_weights(w, losses, "up")[3] > 1 > update_weights(w, losses, "printed")[3]
    # Clipping keeps any one sample from taking over.
    extreme = update_weights(np.ones(m), np.array([0.0, 0.0, 0.0, 50.0]), "up", clip=3.0)
    assert extreme.max() / extreme.min() <= 9.0 + 1e-9 and extreme.mean() == pytest.approx(1.0)


def test_distillation_loss_is_eq_14_plus_the_soft_term_by_hand():
    student = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    teacher = np.array([[1.0, 3.0, 0.0], [0.0, 2.0, 1.0]])
    labels = np.array([0, 1])
    log_softmax = lambda z: z - np.log(np.exp(z).sum(1, keepdims=True))  # noqa: E731
    ls = log_softmax(student)
    # Eq. 14: the teacher's hard labels are classes 1 and 1.
    eq14 = 0.5 * (-ls[[0, 1], labels] - ls[[0, 1], [1, 1]])
    t = 2.0
    p_t, log_p_s = np.exp(log_softmax(teacher / t)), log_softmax(student / t)
    soft = t * t * (p_t * (np.log(p_t) - log_p_s)).sum(1)
    as_tensors = [torch.tensor(student), torch.tensor(labels), torch.tensor(teacher)]
    np.testing.assert_allclose(Distill()(*as_tensors).numpy(), eq14, rtol=1e-12)
    np.testing.assert_allclose(Distill(soft=0.5, temperature=t)(*as_tensors).numpy(), eq14 + 0.5 * soft, rtol=1e-12)
    # The soft term vanishes when the student's distribution is the teacher's.
    same = Distill(soft=1.0)(torch.tensor(teacher), torch.tensor(labels), torch.tensor(teacher))
    np.testing.assert_allclose(
        same.numpy(), Distill()(torch.tensor(teacher), torch.tensor(labels), torch.tensor(teacher)).numpy(), atol=1e-12
    )
