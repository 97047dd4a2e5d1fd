"""Importance of a teacher's heads, MLP neurons, embedding channels and layers (paper appendix B1).

Method: first-order Taylor, i.e. gradient × activation through a multiplicative mask of ones
(Michel et al., "Are Sixteen Heads Really Better than One?", 2019; Molchanov et al., 2019).
For a unit u with mask m_u, ∂L/∂m_u = Σ a_u·∂L/∂a_u estimates how much the loss changes if u is
removed. It needs one forward and one backward pass per calibration batch, sees every unit in
context (magnitude alone does not: a large activation that the next layer ignores scores high),
and is the same code for every family: masks sit on the inputs of the layer that mixes the head
outputs, of the MLP's output layer, and of each block (the embedding channels of the residual
stream). The score of a unit is Σ over batches of |∂L/∂m_u|. A layer's score is the sum of its
heads' and neurons' scores, each normalised by the teacher-wide total, so both count equally.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cofc.compiler.models.batches import to_device
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU, placed
from cofc.compiler.planning.slices import Importance


def _masking_hook(mask: torch.Tensor, group: int):
    """Multiply the hooked module's first input by `mask`, each entry covering `group` features."""

    def hook(module, args, kwargs):
        x = args[0]
        scale = mask.repeat_interleave(group) if group > 1 else mask
        return (x * scale, *args[1:]), kwargs

    return hook


RANKING_SAMPLES = 2000  # enough for a stable ranking; the gradients cost a teacher pass each


def ranking_samples(split: Split, seed: int) -> Split:
    """The samples that rank units: a seeded random subset, not the first ones, since a data set's
    file order can be sorted by class (20 Newsgroups is) and a ranking on a few classes is biased."""
    return split.take(RANKING_SAMPLES, seed=seed)


def rank_units(teacher: Teacher, data: Split, batch: int = 64, device: torch.device = CPU) -> Importance:
    """Score every head, neuron, channel and layer of the teacher on labelled calibration data,
    running it on `device`."""
    adapter, model, spec = teacher.adapter, teacher.model, teacher.spec
    blocks = adapter.blocks(model)
    head_masks = [torch.ones(spec.heads, device=device, requires_grad=True) for _ in blocks]
    neuron_masks = [torch.ones(spec.mlp, device=device, requires_grad=True) for _ in blocks]
    channel_masks = [torch.ones(spec.dim, device=device, requires_grad=True) for _ in blocks]
    handles = []
    groups = adapter.unit_groups(model)  # teacher units per planning unit (Swin's stages: 2^s)
    for block, g, hm, nm, cm in zip(blocks, groups, head_masks, neuron_masks, channel_masks, strict=True):
        handles.append(
            block.get_submodule(adapter.head_mixer).register_forward_pre_hook(
                _masking_hook(hm, spec.head_dim * g), with_kwargs=True
            )
        )
        handles.append(
            block.get_submodule(adapter.mlp_out).register_forward_pre_hook(_masking_hook(nm, g), with_kwargs=True)
        )
        handles.append(block.register_forward_pre_hook(_masking_hook(cm, g), with_kwargs=True))
    scores = {
        "heads": np.zeros((spec.layers, spec.heads)),
        "neurons": np.zeros((spec.layers, spec.mlp)),
        "channels": np.zeros((spec.layers, spec.dim)),
    }
    was_training = model.training
    model.eval()
    try:
        with placed(device, model):
            for i in tqdm(range(0, len(data), batch), desc="ranking heads and neurons", leave=False):
                inputs = to_device(teacher.preprocess(data.inputs[i : i + batch]), device)
                labels = torch.as_tensor(data.labels[i : i + batch], device=device)
                grads = torch.autograd.grad(
                    F.cross_entropy(teacher.logits(inputs), labels), head_masks + neuron_masks + channel_masks
                )
                n = len(blocks)
                for key, part in zip(
                    ("heads", "neurons", "channels"), (grads[:n], grads[n : 2 * n], grads[2 * n :]), strict=True
                ):
                    scores[key] += np.abs(torch.stack(part).cpu().numpy())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = scores["heads"].sum(1) / scores["heads"].sum() + scores["neurons"].sum(1) / scores["neurons"].sum()
    return Importance(scores["heads"], scores["neurons"], scores["channels"].sum(0), layers)
