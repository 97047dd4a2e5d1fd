"""Model inputs in bulk: preprocess a whole split once, run a function over it in batches, take
the rows of a batch, move a batch to the device that consumes it. Shared by the search's proxy
and calibration, so that neither's code is part of the other's (the build's cache keys follow
imports). Whole splits stay on the CPU; only the batch at hand is on the device (torch_device.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cofc.compiler.models.adapters.base import Inputs
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU


def take(inputs: Inputs, index: Any) -> Inputs:
    return {k: v[index] for k, v in inputs.items()}


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    return {k: v.to(device) for k, v in inputs.items()}


def preprocess_all(teacher: Teacher, raw: Any, batch: int = 1024) -> Inputs:
    parts = [teacher.preprocess(raw[i : i + batch]) for i in range(0, len(raw), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def batched(
    fn: Callable[[Inputs], torch.Tensor], inputs: Inputs, batch: int = 512, device: torch.device = CPU
) -> torch.Tensor:
    """`fn` over `inputs` in batches, each batch on `device`; the outputs, on the CPU."""
    n = len(next(iter(inputs.values())))
    return torch.cat([fn(to_device(take(inputs, slice(i, i + batch)), device)).cpu() for i in range(0, n, batch)])
