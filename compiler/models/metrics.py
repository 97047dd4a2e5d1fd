"""Accuracy of any model of a teacher's family (the teacher or a sub-model) on a labelled split."""
from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher


@torch.no_grad()
def accuracy(teacher: Teacher, split: Split, model: nn.Module | None = None, batch: int = 256,
             device: str = "cpu", desc: str | None = None) -> float:
    """Top-1 accuracy of `model` (default: the teacher's own), on inputs preprocessed as the
    teacher's record says."""
    model = teacher.model if model is None else model
    model.eval()
    correct = 0
    for i in tqdm(range(0, len(split), batch), desc=desc, leave=False, disable=desc is None):
        x = {k: v.to(device) for k, v in teacher.preprocess(split.inputs[i:i + batch]).items()}
        pred = teacher.adapter.logits(model, x).argmax(-1).cpu().numpy()
        correct += int((pred == split.labels[i:i + batch]).sum())
    return correct / len(split)
