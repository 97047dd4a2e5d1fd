"""Layer-wise hidden-state distillation: each sub-model block regresses onto the teacher block it
was cut from, on the sub-model's own channels.

Eq. 14 teaches a sub-model only through its logits. But each of its blocks was cut from one
teacher block (`WeightSlices.layers`) and keeps a subset of the teacher's embedding channels
(`WeightSlices.channels`), so the teacher's output of that block, restricted to those channels,
is a target for every intermediate layer too (TinyBERT, MiniLM-style intermediate distillation).
The term added to a sample's loss is

    β · mean_k [ ‖s_k − t_{layers[k]}[:, :, channels]‖² / ‖t_{layers[k]}[:, :, channels]‖² ]

(squared norms over tokens and channels): normalised, so that layers whose residual stream has
grown large do not outweigh the early ones, and so that β means the same for every family.

The teacher's block outputs are computed once, before boosting, in the same pass as its logits,
and kept in fp16: running the teacher again on every training step doubled the calibration's time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from tqdm import tqdm

from cofc.compiler.calibration.booster import LossFn, Targets
from cofc.compiler.models.adapters.base import Inputs, ModelAdapter
from cofc.compiler.models.batches import take, to_device
from cofc.compiler.models.torch_device import CPU, placed
from cofc.compiler.planning.slices import WeightSlices


def block_key(layer: int) -> str:
    """The key of teacher block `layer`'s outputs in the distillation targets."""
    return f"block{layer}"


@contextmanager
def block_outputs(adapter: ModelAdapter, model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect each transformer block's output token states, in block order, while inside."""
    outputs: list[torch.Tensor] = []

    def keep(_module, _inputs, output) -> None:
        outputs.append(output[0] if isinstance(output, tuple) else output)  # HF blocks return tuples

    hooks = [block.register_forward_hook(keep) for block in adapter.blocks(model)]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def teacher_targets(
    adapter: ModelAdapter,
    teacher: nn.Module,
    inputs: Inputs,
    layers: Sequence[int],
    batch: int = 512,
    device: torch.device = CPU,
) -> Targets:
    """The teacher's logits for every sample and, from the same pass, its output tokens of each
    block in `layers` in fp16; the teacher runs on `device`, the targets are kept on the CPU."""
    n = len(next(iter(inputs.values())))
    logits, kept = [], {}
    teacher.eval()
    with placed(device, teacher):
        for start in tqdm(range(0, n, batch), desc="running the teacher for its targets", leave=False):
            x = to_device(take(inputs, slice(start, start + batch)), device)
            with block_outputs(adapter, teacher) as outputs:
                logits.append(adapter.logits(teacher, x).cpu())
            for j in layers:
                out = outputs[j]
                if j not in kept:  # allocated once: the targets are most of the calibration's memory
                    kept[j] = torch.empty((n, *out.shape[1:]), dtype=torch.float16)
                kept[j][start : start + len(out)] = out.half().cpu()
    return {"logits": torch.cat(logits)} | {block_key(j): t for j, t in kept.items()}


def with_layer_distill(adapter: ModelAdapter, slices: WeightSlices, beta: float, loss: LossFn) -> LossFn:
    """`loss` plus β times the normalised hidden-state error of the sub-model cut as `slices`;
    the targets must hold `teacher_targets` for every layer in `slices.layers`."""
    channels = torch.as_tensor(slices.channels, dtype=torch.long)

    def distilled(model: nn.Module, x: Inputs, y: torch.Tensor, targets: Targets) -> torch.Tensor:
        with block_outputs(adapter, model) as outputs:
            base = loss(model, x, y, targets)
        if len(outputs) != len(slices.layers):
            raise ValueError(
                f"{len(outputs)} block outputs from a sub-model of {len(slices.layers)} blocks: "
                "the base loss must run the model exactly once"
            )
        errors, index = [], channels.to(base.device)
        for student, j in zip(outputs, slices.layers, strict=True):
            target = targets[block_key(j)].index_select(-1, index).float()
            errors.append((student - target).square().flatten(1).sum(1) / target.square().flatten(1).sum(1))
        return base + beta * torch.stack(errors).mean(0)

    return distilled
