"""Bias compensation for a freshly cut sub-model: what the dropped inputs gave on average.

A sub-model keeps some of the inputs of each of its teacher's linear layers (the embedding
channels it was dealt for the layers that read the residual stream, its heads for the attention
output, its neurons for the MLP output). The teacher's layer adds W[:, dropped]·x[dropped] on top
of what the sub-model computes; replacing that term by its mean over calibration data,
W[:, dropped]·E[x[dropped]], and folding it into the bias keeps each layer's output centred where
the teacher's is (the bias-compensation step of structured-pruning methods such as FLAP, An et al.,
2024). It costs one teacher pass over a few thousand samples and no training, and it changes the
starting point of calibration only: shapes, export and runtime are the same.
"""
from __future__ import annotations

import re
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from cofc.compiler.adapters import ModelAdapter, WeightSlices
from cofc.compiler.adapters._base import ALL, Inputs, role_index, teacher_name


MEAN_SAMPLES = 2048  # calibration samples the means are taken over: enough for a stable mean per input


def _input_axis(module: nn.Module) -> int | None:
    """Which axis of the module's weight runs over its inputs (None: not a linear map)."""
    if isinstance(module, nn.Linear):
        return 1
    if isinstance(module, Conv1D):  # GPT2 stores (in, out)
        return 0
    return None


@torch.no_grad()
def input_means(adapter: ModelAdapter, teacher: nn.Module, inputs: Inputs, samples: int = MEAN_SAMPLES,
                batch: int = 256) -> dict[str, torch.Tensor]:
    """Mean input vector of every linear layer of `teacher` with a bias, over the tokens of the
    first `samples` of `inputs` (preprocessed)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module, args):
            x = args[0].reshape(-1, args[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.double().sum(0)
            counts[name] = counts.get(name, 0) + len(x)
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in teacher.named_modules()
               if _input_axis(m) is not None and getattr(m, "bias", None) is not None]
    n = min(samples, len(next(iter(inputs.values()))))
    try:
        for i in range(0, n, batch):
            adapter.logits(teacher, {k: v[i:min(i + batch, n)] for k, v in inputs.items()})
    finally:
        for h in handles:
            h.remove()
    return {name: (sums[name] / counts[name]).float() for name in sums}


@torch.no_grad()
def compensate(adapter: ModelAdapter, teacher: nn.Module, student: nn.Module, slices: WeightSlices,
               means: dict[str, torch.Tensor]) -> None:
    """Add W[kept outputs, dropped inputs]·E[dropped inputs] to each of `student`'s biases."""
    base = adapter.spec(teacher)
    teacher_modules = dict(teacher.named_modules())
    block = re.compile(adapter.block_pattern)
    for name, module in student.named_modules():
        axis = _input_axis(module)
        if axis is None or module.bias is None:
            continue
        source = teacher_name(f"{name}.weight", block, slices)[:-len(".weight")]
        if source not in means:
            continue
        match = block.search(f"{name}.weight")
        layer = int(match.group(1)) if match else None
        roles = adapter.roles_of(f"{name}.weight")
        in_role, out_role = roles[axis], roles[1 - axis]
        if in_role is ALL:
            continue
        weight = teacher_modules[source].weight
        if axis == 0:
            weight = weight.t()
        kept = set(role_index(in_role, layer, slices, base))
        dropped = torch.as_tensor([i for i in range(weight.shape[1]) if i not in kept], dtype=torch.long)
        shift = weight[:, dropped] @ means[source][dropped]
        if out_role is not ALL:
            shift = shift[torch.as_tensor(role_index(out_role, layer, slices, base), dtype=torch.long)]
        module.bias += shift
