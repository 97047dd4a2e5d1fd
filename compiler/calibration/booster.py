"""Progressive boosting distillation (paper §III-C2, Algorithm 1 lines 12–15, eq. 13–14).

Sub-models are calibrated one after another. Each is trained on
    L_Bo = w/2 · [CE(student, label) + CE(student, teacher's hard label)]     (eq. 14)
with per-sample weights w, and after it is trained the weights are updated from its per-sample
loss L (eq. 13), so the next sub-model concentrates where this one is weak (or strong):
    printed   w ← w · exp((1/M − 1) · L)   as eq. 13 is printed: high-loss samples lose weight
    up        w ← w · exp((1 − 1/M) · L)   the boosting reading: high-loss samples gain weight
Both are normalised to mean 1 and clipped to [1/CLIP, CLIP] (then renormalised), so that a few
very hard (or very easy) samples cannot take all the weight.

Beside eq. 14, `Distill.soft` adds Hinton's soft-label term, soft·T²·KL(teacher_T ‖ student_T):
the teacher's full distribution says which wrong classes are near, which hard labels cannot, and
small sub-models learn measurably more from it (docs/experiments/calibration.md). soft = 0 is
eq. 14 exactly. A per-sample loss sees the teacher's outputs for its batch as `Targets`: always
its logits, and whatever else a loss distils from (`layer_distill`: its block outputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cofc.compiler.models.adapters.base import Inputs
from cofc.compiler.models.batches import take, to_device
from cofc.compiler.models.torch_device import CPU

READINGS = ("up", "printed")
CLIP = 5.0


def update_weights(weights: np.ndarray, losses: np.ndarray, reading: str, clip: float = CLIP) -> np.ndarray:
    """Eq. 13 in one of its two readings, normalised to mean 1 and clipped."""
    m = len(weights)
    sign = {"printed": 1.0, "up": -1.0}[reading]
    w = weights * np.exp(sign * (1.0 / m - 1.0) * losses)
    w = w / w.mean()
    w = np.clip(w, 1.0 / clip, clip)
    return w / w.mean()


@dataclass(frozen=True)
class Distill:
    """The per-sample loss of a student's logits against the label and the teacher's logits."""

    soft: float = 0.0  # weight of the soft-label term; 0 is eq. 14 as printed
    temperature: float = 4.0

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """½[CE(s, y) + CE(s, argmax t)] (eq. 14, before the sample weight) + the soft term."""
        loss = 0.5 * (
            F.cross_entropy(logits, labels, reduction="none")
            + F.cross_entropy(logits, teacher_logits.argmax(-1), reduction="none")
        )
        if self.soft:
            t = self.temperature
            kl = F.kl_div(
                F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1), reduction="none", log_target=True
            ).sum(-1)
            loss = loss + self.soft * t * t * kl
        return loss


@dataclass(frozen=True)
class TrainConfig:
    """One training loop's budget; epochs and weight decay are plan settings (plan/schema.py)."""

    epochs: int
    weight_decay: float
    lr: float = 2e-3  # the boosting's peak learning rate; the joint fine-tuning's is a plan setting
    batch: int = 128


# The teacher's outputs per sample, by name; "logits" is always there. Indexed with `take`.
Targets = dict[str, torch.Tensor]
# Per-sample loss of a model on a batch: (model, inputs, labels, teacher targets) -> (batch,).
LossFn = Callable[[nn.Module, Inputs, torch.Tensor, Targets], torch.Tensor]
M = TypeVar("M", bound=nn.Module)  # the model a loss reads: any module, or FusedModel for the joint loss


def eq14(logits_of: Callable[[nn.Module, Inputs], torch.Tensor], distill: Distill) -> LossFn:
    """Eq. 14's per-sample loss (with `distill`'s soft term) of the logits `logits_of` computes."""
    return lambda model, x, y, t: distill(logits_of(model, x), y, t["logits"])


def train_weighted(
    model: M,
    loss_fn: Callable[[M, Inputs, torch.Tensor, Targets], torch.Tensor],
    inputs: Inputs,
    labels: torch.Tensor,
    targets: Targets,
    weights: np.ndarray,
    config: TrainConfig,
    seed: int,
    desc: str,
    device: torch.device = CPU,
) -> None:
    """AdamW with a one-cycle schedule on a per-sample loss, weighted per sample; `model` is on
    `device`, the data on the CPU, and each batch moves to `device`."""
    n = len(labels)
    steps = config.epochs * math.ceil(n / config.batch)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    w = torch.as_tensor(weights, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(total=steps, desc=desc, leave=False)
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, config.batch):
            idx = order[i : i + config.batch]
            per_sample = loss_fn(
                model,
                to_device(take(inputs, idx), device),
                labels[idx].to(device),
                to_device(take(targets, idx), device),
            )
            loss = (w[idx].to(device) * per_sample).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()


@torch.no_grad()
def per_sample_loss(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    labels: torch.Tensor,
    targets: Targets,
    batch: int = 512,
    device: torch.device = CPU,
) -> np.ndarray:
    model.eval()
    out = [
        loss_fn(
            model, to_device(take(inputs, s), device), labels[s].to(device), to_device(take(targets, s), device)
        ).cpu()
        for s in (slice(i, i + batch) for i in range(0, len(labels), batch))
    ]
    return torch.cat(out).numpy()


def boost(
    submodels: list[nn.Module],
    loss_fns: Sequence[LossFn],
    inputs: Inputs,
    labels: torch.Tensor,
    targets: Targets,
    config: TrainConfig,
    reading: str = "up",
    seed: int = 0,
    device: torch.device = CPU,
) -> list[np.ndarray]:
    """Calibrate `submodels` in order (in place, on `device`, where they must be), each on its own
    loss in `loss_fns`; return the sample weights each one was trained with."""
    weights = np.ones(len(labels))
    history = []
    for n, (model, loss_fn) in enumerate(zip(submodels, loss_fns, strict=True)):
        history.append(weights)
        train_weighted(
            model,
            loss_fn,
            inputs,
            labels,
            targets,
            weights,
            config,
            seed + n,
            desc=f"calibrating sub-model {n + 1}/{len(submodels)}",
            device=device,
        )
        weights = update_weights(
            weights, per_sample_loss(model, loss_fn, inputs, labels, targets, device=device), reading
        )
    return history
