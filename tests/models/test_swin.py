"""The Swin family (timm SwinTransformer): units that scale 2^s per stage, exact slicing across
patch merging and per-block relative-position tables, FLOPs of windowed attention, ONNX parity,
and a timm checkpoint refused in one line. No Swin weights install here: a small random config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cofc.compiler.export.onnx import PooledBackbone, TeacherLogits, export_backbone, export_teacher, parity
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.decompose import cut
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, parameters
from cofc.errors import CofcError
from tests.helpers import assert_flops_counted

ARCH = dict(
    img_size=32, patch_size=2, embed_dim=16, depths=(2, 2, 2), num_heads=(2, 4, 8), head_dim=8,
    window_size=4, mlp_ratio=2.0, num_classes=5, drop_path_rate=0.0,
)  # fmt: skip
RAGGED = SubModelSpec(layers=6, dim=8, heads=(1, 2, 1, 1, 2, 1), mlp=(3, 32, 5, 16, 1, 9))


def small_swin(classes: int = 5) -> tuple[torch.nn.Module, dict]:
    """The small Swin with every weight drawn N(0, 0.2), and its cofc teacher record."""
    torch.manual_seed(0)
    record = {
        "family": "swin",
        "arch": {**ARCH, "num_classes": classes},
        "preprocess": {"kind": "image", "img_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
        "classes": list("abcde"[:classes]),
    }
    model = get_adapter("swin").build_teacher(record).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    record["state_dict"] = model.state_dict()
    return model, record


def teacher():
    model, record = small_swin()
    return get_adapter("swin"), model, record


def images(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def test_spec_counts_stage_zero_units_and_the_submodel_has_its_shape():
    adapter, model, record = teacher()
    base = adapter.spec(model)
    assert (base.layers, base.dim, base.heads, base.mlp, base.head_dim) == (6, 16, 2, 32, 8)
    assert (base.stages, base.tokens, base.window_tokens) == ((2, 2, 2), 256, 16)
    student = adapter.build_submodel(model, RAGGED).eval()
    x = adapter.preprocess(record, images(3))
    assert adapter.token_features(student, x).shape == (3, 16, 8 * 4)  # stage 2: 4×4 tokens, 4× width
    assert adapter.logits(student, x).shape == (3, 5)
    assert sum(p.numel() for p in student.parameters()) == parameters(RAGGED, base)
    assert sum(p.numel() for p in model.parameters()) == parameters(base.full(), base)


def test_full_slice_reproduces_teacher():
    adapter, model, record = teacher()
    (student,) = cut(adapter, model, [WeightSlices.full(adapter.spec(model))])
    x = adapter.preprocess(record, images(4))
    with torch.no_grad():
        torch.testing.assert_close(student(x["pixel_values"]), model(x["pixel_values"]), atol=1e-5, rtol=0)
        torch.testing.assert_close(adapter.logits(student, x), model(x["pixel_values"]), atol=1e-5, rtol=0)


def test_partial_slice_takes_the_named_weights():
    adapter, model, _ = teacher()
    channels = (1, 4, 5, 11, 15)
    heads = ((1,), (0, 1), (0,), (1,), (0, 1), (1,))
    neurons = tuple((k, 31 - k) for k in range(6))
    (student,) = cut(adapter, model, [WeightSlices(tuple(range(6)), channels, heads, neurons)])
    t, s = model.state_dict(), student.state_dict()
    same = lambda a, b: torch.testing.assert_close(a, b, atol=0, rtol=0)  # noqa: E731
    for stage in range(3):
        g = 2**stage
        kept = [c * g + i for c in channels for i in range(g)]
        for b in range(2):
            k, p = 2 * stage + b, f"layers.{stage}.blocks.{b}."
            hs = [h * g + i for h in heads[k] for i in range(g)]
            rows = [h * 8 + i for h in hs for i in range(8)]
            width = 2 * g * 8
            qkv = [part * width + r for part in range(3) for r in rows]
            ns = [n * g + i for n in neurons[k] for i in range(g)]
            same(s[p + "attn.qkv.weight"], t[p + "attn.qkv.weight"][qkv][:, kept])
            same(s[p + "attn.proj.weight"], t[p + "attn.proj.weight"][kept][:, rows])
            same(s[p + "attn.relative_position_bias_table"], t[p + "attn.relative_position_bias_table"][:, hs])
            same(s[p + "mlp.fc1.weight"], t[p + "mlp.fc1.weight"][ns][:, kept])
            same(s[p + "mlp.fc2.weight"], t[p + "mlp.fc2.weight"][kept][:, ns])
            same(s[p + "norm1.weight"], t[p + "norm1.weight"][kept])
        if stage:
            before = [c * g // 2 + i for c in channels for i in range(g // 2)]
            merged = [n * 16 * g // 2 + c for n in range(4) for c in before]  # 4 neighbours of stage s−1
            d = f"layers.{stage}.downsample."
            same(s[d + "norm.weight"], t[d + "norm.weight"][merged])
            same(s[d + "reduction.weight"], t[d + "reduction.weight"][kept][:, merged])
    same(s["patch_embed.proj.weight"], t["patch_embed.proj.weight"][list(channels)])
    last = [c * 4 + i for c in channels for i in range(4)]
    same(s["head.fc.weight"], t["head.fc.weight"][:, last])
    same(s["norm.weight"], t["norm.weight"][last])


def test_flops_match_torch_counter():
    """ω of windowed attention and patch merging, within the norms and softmax it leaves out."""
    adapter, model, record = teacher()

    def explicit(m):
        for block in adapter.blocks(m):
            block.attn.fused_attn = False

    assert_flops_counted(adapter, model, adapter.preprocess(record, images(1)), RAGGED, explicit)


def test_backbone_and_teacher_onnx_parity_with_dynamic_batch(tmp_path):
    adapter, model, record = teacher()
    student = adapter.build_submodel(model, RAGGED).eval()
    example, probe = adapter.preprocess(record, images(2)), adapter.preprocess(record, images(3))
    feeds = {k: v.numpy() for k, v in probe.items()}
    path = export_backbone(adapter, student, example, tmp_path / "b.onnx", opset=17)
    with torch.no_grad():
        want = PooledBackbone(adapter, student, list(probe))(*probe.values()).numpy()
    check = parity(path, feeds, want, 1e-4)
    assert check.ok, check.to_dict()
    assert want.shape == (3, 32)
    path = export_teacher(adapter, model, example, tmp_path / "t.onnx", opset=17)
    with torch.no_grad():
        want = TeacherLogits(adapter, model, list(probe))(*probe.values()).numpy()
    check = parity(path, feeds, want, 1e-4)
    assert check.ok, check.to_dict()


def test_bad_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "swin.pth"
    torch.save({"head.fc.weight": torch.zeros(5, 768)}, path)  # another model's weights
    record = {"family": "swin", "arch": {"timm": "swin_tiny_patch4_window7_224", "weights": str(path)}}
    record["preprocess"] = {"kind": "image"}
    with pytest.raises(CofcError) as info:
        get_adapter("swin").build_teacher(record)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "missing keys" in message


def test_timm_checkpoint_loads_with_timms_preprocessing_and_counts(tmp_path):
    """A Swin-T fine-tuned elsewhere (random here: no weights install), saved as a training
    script does: loaded exactly, normalisation from timm's config, every parameter counted."""
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=3)
    path = tmp_path / "swin.pth"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    record = {"family": "swin", "arch": {"timm": "swin_tiny_patch4_window7_224", "weights": str(path)}}
    record["preprocess"] = {"kind": "image"}
    adapter = get_adapter("swin")
    loaded = adapter.build_teacher(record)
    assert record["arch"]["num_classes"] == 3 and record["arch"]["img_size"] == 224
    assert record["preprocess"]["mean"] == [0.485, 0.456, 0.406] and record["preprocess"]["interpolation"] == "bicubic"
    base = adapter.spec(loaded)
    assert (base.stages, base.dim, base.heads, base.head_dim, base.window_tokens) == ((2, 2, 6, 2), 96, 3, 32, 49)
    assert parameters(base.full(), base) == sum(p.numel() for p in loaded.parameters())
