"""ONNX export parity per family: ONNX Runtime within 1e-4 (abs) of torch on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from cofc.compiler.export.onnx import PooledBackbone, export_aggregator, export_backbone, parity
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.fusion import Aggregator
from cofc.compiler.planning.spec import SubModelSpec
from tests.helpers import raw_inputs, small_record

TOLERANCE = 1e-4


def test_backbone_parity_and_dynamic_batch(family, tmp_path):
    torch.manual_seed(0)
    adapter = get_adapter(family)
    record = small_record(family)
    teacher = adapter.build_teacher(record).eval()
    model = adapter.build_submodel(teacher, SubModelSpec(2, 48, (1, 4), (7, 150))).eval()
    example = adapter.preprocess(record, raw_inputs(family, n=2))
    path = export_backbone(adapter, model, example, tmp_path / "b.onnx", opset=17)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 17
    assert [i.name for i in graph.graph.input] == list(example)
    probe = adapter.preprocess(record, raw_inputs(family, n=4))  # another batch size than exported
    with torch.no_grad():
        want = PooledBackbone(adapter, model, list(probe))(*probe.values()).numpy()
    check = parity(path, {k: v.numpy() for k, v in probe.items()}, want, TOLERANCE)
    assert check.ok, check.to_dict()
    assert want.shape == (4, 48)


def test_aggregator_parity_with_missing_devices(tmp_path):
    torch.manual_seed(0)
    agg = Aggregator([8, 4, 6], 16, torch.nn.Linear(16, 5)).eval()
    path = export_aggregator(agg, tmp_path / "a.onnx")
    feats = torch.randn(7, 18)
    mask = torch.tensor(
        np.array([[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    )
    with torch.no_grad():
        want = agg(feats, mask).numpy()
    assert parity(path, {"features": feats.numpy(), "mask": mask.numpy()}, want, TOLERANCE).ok


def test_failed_export_leaves_no_file(tmp_path):
    class Broken(torch.nn.Module):
        dims = [2]

        def forward(self, features, mask):
            raise RuntimeError("cannot trace")

    try:
        export_aggregator(Broken(), tmp_path / "a.onnx")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
