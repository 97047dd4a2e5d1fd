"""ONNX export of what the devices run: each sub-model backbone, from model inputs to the one
pooled feature vector it sends (DESIGN.md: pool before sending), and the central device's
aggregator and task head, from concatenated features and presence mask to logits.

Graphs are exported with TorchScript tracing (opset pinned by the plan, one .onnx file; 3–5×
faster than the dynamo exporter and ORT-exact on these models), cleaned with onnx-graphsurgeon
(constant folding, dead-node removal, topological sort), and checked against torch on real
inputs; a graph past tolerance fails the build. Graphs over 2 GB keep their weights in an
external data file beside the .onnx."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cofc.compiler.models.adapters.base import Inputs, ModelAdapter
from cofc.compiler.models.fusion import Aggregator, device_feature
from cofc.runtime.backends._calibration import save_calibration

FEATURE = "feature"
FEATURES, MASK, LOGITS = "features", "mask", "logits"
TWO_GB = 2**31


class PooledBackbone(nn.Module):
    """inputs -> final tokens -> one feature vector (batch, dim): the graph a device runs."""

    def __init__(self, adapter: ModelAdapter, model: nn.Module, input_names: list[str], feature: str = "pool"):
        super().__init__()
        self.adapter, self.model, self.input_names, self.feature = adapter, model, input_names, feature

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return device_feature(self.adapter, self.model, dict(zip(self.input_names, tensors, strict=True)), self.feature)


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int,
) -> Path:
    """Trace, clean and write atomically (no half-written file on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints in shapes
            torch.onnx.export(
                module,
                args,
                tmp,
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                dynamo=False,
                dynamic_axes={n: {0: "batch"} for n in input_names + output_names},
            )
        _clean(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextlib.contextmanager
def _ort_warnings_off():
    """graphsurgeon folds constants by running the foldable part of the graph in ONNX Runtime,
    whose optimiser then warns about that partial graph ("UnsqueezeElimination cannot remove node
    /backbone/embeddings/Unsqueeze", an Unsqueeze of a constant that feeds two nodes): nothing is
    wrong with the exported graph, and a user should not see it."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings


def _clean(src: Path, dst: Path) -> None:
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.load(str(src)))
    with _ort_warnings_off():
        graph.fold_constants()
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.opset_import[0].version = onnx.load(str(src), load_external_data=False).opset_import[0].version
    onnx.checker.check_model(model)
    big = model.ByteSize() > TWO_GB
    tmp = dst.with_suffix(".onnx.part")
    onnx.save_model(
        model,
        str(tmp),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=dst.name + ".data" if big else None,
    )
    os.replace(tmp, dst)


def export_backbone(
    adapter: ModelAdapter, model: nn.Module, example: Inputs, path: Path, opset: int = 17, feature: str = "pool"
) -> Path:
    names = list(example)
    module = PooledBackbone(adapter, model.eval(), names, feature).eval()
    return _export(module, tuple(example[n] for n in names), path, names, [FEATURE], opset)


class TeacherLogits(nn.Module):
    """The whole teacher, inputs -> logits: the single-device baseline `cofc bench` times."""

    def __init__(self, adapter: ModelAdapter, model: nn.Module, input_names: list[str]):
        super().__init__()
        self.adapter, self.model, self.input_names = adapter, model, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(self.model, dict(zip(self.input_names, tensors, strict=True)))


def export_teacher(adapter: ModelAdapter, model: nn.Module, example: Inputs, path: Path, opset: int = 17) -> Path:
    names = list(example)
    return _export(
        TeacherLogits(adapter, model.eval(), names).eval(),
        tuple(example[n] for n in names),
        path,
        names,
        [LOGITS],
        opset,
    )


def export_aggregator(aggregator: Aggregator, path: Path, opset: int = 17) -> Path:
    example = (torch.randn(2, sum(aggregator.dims)), torch.ones(2, len(aggregator.dims)))
    return _export(aggregator.eval(), example, path, [FEATURES, MASK], [LOGITS], opset)


@dataclass(frozen=True)
class Parity:
    """How far the ONNX graph run by ONNX Runtime is from torch on the same real inputs."""

    graph: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.tolerance

    def to_dict(self) -> dict:
        return {
            "graph": self.graph,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def parity(path: Path, feeds: dict[str, np.ndarray], expected: np.ndarray, tolerance: float) -> Parity:
    """Run the exported graph with ONNX Runtime and compare with torch's output."""
    from cofc.runtime.backends import open_backend

    with open_backend("onnxruntime", path, threads=1) as backend:
        got = next(iter(backend.run(feeds).values()))
    diff = np.abs(got - expected)
    rel = diff / np.maximum(np.abs(expected), 1e-6)
    return Parity(path.name, float(diff.max()), float(rel.max()), tolerance)


INT8_SAMPLES = 512  # calibration inputs per graph: 16 batches of 32 for TensorRT's entropy calibrator


def write_int8_calibration(
    backbones: list[Path], aggregator: Path, feeds: dict[str, np.ndarray], features: np.ndarray, mask: np.ndarray
) -> list[Path]:
    """Store each graph's INT8 calibration inputs beside it: the model inputs for every backbone,
    and their features with a presence mask (some devices missing, as in service) for the
    aggregator."""
    return [save_calibration(path, feeds) for path in backbones] + [
        save_calibration(aggregator, {FEATURES: features, MASK: mask})
    ]
