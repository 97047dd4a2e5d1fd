"""Where the compiler's torch work runs: `--device auto|cpu|cuda` of `cofc build` and `cofc teacher`.

Models live on the CPU between steps, where ONNX export, `torch.save` and the callers expect them.
A step that computes moves its models to the device for its duration (`placed`) and each batch
where it is consumed (`batches.to_device`), and hands its results back on the CPU. On the CPU every
move is a no-op, so a CPU build computes exactly what it did before there was a choice; random
draws (orders, masks) stay on CPU generators, so a CUDA build sees the same samples in the same
order, and differs from a CPU one only by how the device rounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from cofc.errors import CofcError

CPU = torch.device("cpu")


def resolve(choice: str) -> torch.device:
    """The device `--device choice` names: auto is CUDA where torch sees one, else the CPU."""
    if choice == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if choice == "cuda" and not torch.cuda.is_available():
        raise CofcError("--device cuda: no CUDA device is visible to torch here")
    return torch.device(choice)


def describe(device: torch.device) -> str:
    """The device in words, for reports: "cpu", or "cuda (NVIDIA H200)"."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


@contextmanager
def placed(device: torch.device, *modules: nn.Module) -> Iterator[None]:
    """`modules` on `device` while inside, and back where each was afterwards."""
    homes = [next(m.parameters()).device for m in modules]
    for m in modules:
        m.to(device)
    try:
        yield
    finally:
        for m, home in zip(modules, homes, strict=True):
            m.to(home)
