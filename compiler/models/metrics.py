"""Accuracy of any model of a teacher's family (the teacher or a sub-model) on a labelled split."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from cofc.compiler.models.batches import to_device
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU, placed


@torch.no_grad()
def accuracy(
    teacher: Teacher,
    split: Split,
    model: nn.Module | None = None,
    batch: int = 256,
    device: torch.device | str = CPU,
    desc: str | None = None,
) -> float:
    """Top-1 accuracy of `model` (default: the teacher's own) run on `device`, on inputs
    preprocessed as the teacher's record says."""
    model = teacher.model if model is None else model
    device = torch.device(device)
    model.eval()
    correct = 0
    with placed(device, model):
        for i in tqdm(range(0, len(split), batch), desc=desc, leave=False, disable=desc is None):
            x = to_device(teacher.preprocess(split.inputs[i : i + batch]), device)
            pred = teacher.adapter.logits(model, x).argmax(-1).cpu().numpy()
            correct += int((pred == split.labels[i : i + batch]).sum())
    return correct / len(split)
