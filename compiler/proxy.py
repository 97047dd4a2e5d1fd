"""The search's accuracy proxy, eq. 7: the mean validation loss of the un-calibrated sub-models.

Called once per evaluated policy inside the search, so everything that does not depend on the
policy is done once: validation inputs are preprocessed and the teacher's hard labels computed
up front, and each policy's value is cached. The loss is eq. 14's ½[CE(label) + CE(teacher)]
with uniform weights, so the search ranks policies by what calibration will optimise.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cofc.compiler.adapters import ModelAdapter
from cofc.compiler.booster import per_sample_loss
from cofc.compiler.calibrate import batched, preprocess_all
from cofc.compiler.decompose import decompose
from cofc.compiler.fusion import submodel_logits
from cofc.compiler.importance import Importance
from cofc.compiler.spec import SubModelSpec


class ValidationLoss:
    def __init__(self, adapter: ModelAdapter, teacher: nn.Module, record: dict[str, Any], importance: Importance,
                 raw_inputs: Any, labels: np.ndarray, feature: str = "pool"):
        self.adapter, self.teacher, self.importance, self.feature = adapter, teacher, importance, feature
        self.inputs = preprocess_all(adapter, record, raw_inputs)
        self.labels = torch.as_tensor(labels)
        self.teacher_labels = batched(lambda x: adapter.logits(teacher, x).argmax(-1), self.inputs)
        self.cache: dict[tuple[SubModelSpec, ...], float] = {}

    def __call__(self, policy: Sequence[SubModelSpec]) -> float:
        key = tuple(policy)
        if key not in self.cache:
            forward = lambda m, x: submodel_logits(self.adapter, m, x, self.feature)  # noqa: E731
            losses = [per_sample_loss(m, forward, self.inputs, self.labels, self.teacher_labels).mean()
                      for m in decompose(self.adapter, self.teacher, key, self.importance)]
            self.cache[key] = float(np.mean(losses))
        return self.cache[key]
