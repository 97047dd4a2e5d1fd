"""ONNX export of what a device runs: its sub-model backbone, from model inputs to the one pooled
feature vector it sends to the central device (DESIGN.md: pool before sending)."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from cofc.compiler.adapters import ModelAdapter
from cofc.compiler.adapters._base import Inputs

FEATURE = "feature"


class PooledBackbone(nn.Module):
    """inputs -> final tokens -> pooled feature (batch, dim): the graph a device runs."""

    def __init__(self, adapter: ModelAdapter, model: nn.Module, input_names: list[str]):
        super().__init__()
        self.adapter, self.model, self.input_names = adapter, model, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.input_names, tensors))
        return self.adapter.pool(self.model, self.adapter.token_features(self.model, inputs), inputs)


def export_backbone(adapter: ModelAdapter, model: nn.Module, example: Inputs, path: Path,
                    opset: int = 17) -> Path:
    """Export with a dynamic batch axis; written atomically (no half-written file on failure)."""
    names = list(example)
    module = PooledBackbone(adapter, model.eval(), names).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints in shapes
            torch.onnx.export(module, tuple(example[n] for n in names), tmp, input_names=names,
                              output_names=[FEATURE], opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in names + [FEATURE]})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
