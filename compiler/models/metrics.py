"""Accuracy of any model of a family (teacher or sub-model) on raw data-set inputs."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cofc.compiler.models.adapters.base import ModelAdapter


@torch.no_grad()
def accuracy(adapter: ModelAdapter, model: nn.Module, record: dict[str, Any], inputs: Any,
             labels: np.ndarray, batch: int = 256, device: str = "cpu", desc: str | None = None) -> float:
    """Top-1 accuracy; `record` supplies the preprocessing (the teacher's)."""
    model.eval()
    correct = 0
    steps = range(0, len(labels), batch)
    for i in tqdm(steps, desc=desc, leave=False, disable=desc is None):
        x = {k: v.to(device) for k, v in adapter.preprocess(record, inputs[i:i + batch]).items()}
        pred = adapter.logits(model, x).argmax(-1).cpu().numpy()
        correct += int((pred == labels[i:i + batch]).sum())
    return correct / len(labels)
