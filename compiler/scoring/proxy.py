"""The search's accuracy proxy, eq. 7: the mean validation loss of the un-calibrated sub-models.

One refinement: each sub-model's features are scored through a task head refitted on them, not
through its slice of the teacher's head. With embedding channels shared out disjointly (C2), a
freshly cut sub-model's own head sits at chance whatever its size, so that loss cannot tell a
large sub-model from a small one and the search would chase latency alone. The refitted head (a
regularised logistic regression, L-BFGS, fitted on one half of the validation set and scored on
the other) measures what calibration has to work with: how much of the task the sub-model's
features still carry. It ranks capacity monotonically on the example teachers and costs a few
hundred milliseconds per policy.

Everything that does not depend on the policy is done once (inputs preprocessed up front), and
each policy's value is cached. The sub-models run on the build's device; the refit, small and
iterative, runs on the CPU, where it rounds the same on every host.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cofc.compiler.models.batches import batched, preprocess_all
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.decompose import decompose
from cofc.compiler.models.fusion import device_feature
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU
from cofc.compiler.planning.slices import Importance
from cofc.compiler.planning.spec import SubModelSpec

L2 = 1e-3


def refit_head_loss(features: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """Cross-entropy on one half of the samples of a linear head fitted on the other half. The
    halves are a fixed random split, not the first and second half: a data set's file order can
    be sorted by class (20 Newsgroups is), and a head never shown half the classes scores noise."""
    f = (features - features.mean(0)) / (features.std(0) + 1e-6)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    fit, score = order[: len(labels) // 2], order[len(labels) // 2 :]
    head = nn.Linear(f.shape[1], classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(f[fit]), labels[fit]) + L2 * (head.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(F.cross_entropy(head(f[score]), labels[score]))


class ValidationLoss:
    def __init__(self, teacher: Teacher, importance: Importance, val: Split, feature: str, device: torch.device = CPU):
        self.adapter, self.teacher, self.importance, self.feature = teacher.adapter, teacher.model, importance, feature
        self.device = device
        self.inputs = preprocess_all(teacher, val.inputs)
        self.labels = torch.as_tensor(val.labels)
        self.classes = teacher.spec.classes
        self.cache: dict[tuple[SubModelSpec, ...], float] = {}

    def __call__(self, policy: Sequence[SubModelSpec]) -> float:
        key = tuple(policy)
        if key not in self.cache:
            losses = []
            for model in decompose(self.adapter, self.teacher, key, self.importance):
                model.to(self.device)  # a fresh cut, dropped after: nothing to move back
                feats = batched(
                    partial(device_feature, self.adapter, model, kind=self.feature), self.inputs, device=self.device
                )
                losses.append(refit_head_loss(feats, self.labels, self.classes))
            self.cache[key] = float(np.mean(losses))
        return self.cache[key]
