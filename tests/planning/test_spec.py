"""ω(C) and φ(C) against real models: torch's FLOP counter and real parameter tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.teacher import load_teacher
from cofc.compiler.planning.spec import (
    SubModelSpec,
    TransformerSpec,
    flops,
    memory_bytes,
    parameters,
    uniform_flops,
    uniform_memory_bytes,
)
from tests.helpers import REPO, raw_inputs, small_record

RAGGED = SubModelSpec(layers=2, dim=48, heads=(1, 4), mlp=(7, 150))


def _explicit_attention(family: str, model: torch.nn.Module) -> None:
    """FlopCounterMode does not count fused CPU attention: switch to the explicit matmuls."""
    if family == "vit":
        for block in model.blocks:
            block.attn.fused_attn = False
    else:
        model.backbone.set_attn_implementation("eager")


def _counted_flops(family, adapter, model, record) -> int:
    _explicit_attention(family, model)
    x = adapter.preprocess(record, raw_inputs(family, n=1))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        adapter.logits(model, x)
    return counter.get_total_flops()


@pytest.mark.parametrize("ragged", [False, True], ids=["teacher", "ragged-submodel"])
def test_flops_match_torch_counter(family, ragged):
    adapter = get_adapter(family)
    record = small_record(family)
    teacher = adapter.build_teacher(record).eval()
    base = adapter.spec(teacher)
    sub = RAGGED if ragged else base.full()
    model = adapter.build_submodel(teacher, sub).eval() if ragged else teacher
    counted = _counted_flops(family, adapter, model, record)
    assert flops(sub, base) == pytest.approx(counted, rel=0.05)


def test_flops_and_parameters_of_the_minilm_teacher():
    teacher = load_teacher(REPO / "examples/teachers/minilm_reuters_r8.pt")
    adapter = get_adapter("bert")
    base = adapter.spec(teacher.model)
    assert (base.layers, base.dim, base.heads, base.mlp) == (6, 384, 12, 1536)
    assert flops(base.full(), base) == pytest.approx(
        _counted_flops("bert", adapter, teacher.model, teacher.record), rel=0.05
    )
    assert parameters(base.full(), base) == sum(p.numel() for p in teacher.model.parameters())


def test_memory_counts_every_weight_byte(family):
    adapter = get_adapter(family)
    teacher = adapter.build_teacher(small_record(family))
    base = adapter.spec(teacher)
    model = adapter.build_submodel(teacher, RAGGED)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    phi = memory_bytes(RAGGED, base)
    assert weight_bytes < phi < weight_bytes + 4 * base.tokens * (base.tokens * 4 + 4 * 96 + 150) * 4


def test_bigger_submodels_cost_more():
    base = TransformerSpec(layers=4, dim=64, heads=4, mlp=128, head_dim=16, tokens=17, classes=10)
    small = SubModelSpec(2, 32, (1, 2), (32, 64))
    for bigger in (
        SubModelSpec(3, 32, (1, 2, 1), (32, 64, 8)),
        SubModelSpec(2, 48, (1, 2), (32, 64)),
        SubModelSpec(2, 32, (2, 2), (32, 64)),
        SubModelSpec(2, 32, (1, 2), (33, 64)),
    ):
        assert flops(bigger, base) > flops(small, base)
        assert memory_bytes(bigger, base) > memory_bytes(small, base)


def test_array_forms_equal_flops_and_memory_of_uniform_specs():
    """The search screens candidates with `uniform_flops`/`uniform_memory_bytes`: they must be ω
    and φ exactly, for every shape (embedding and head terms included)."""
    base = TransformerSpec(
        layers=6, dim=96, heads=6, mlp=192, head_dim=16, tokens=50, classes=10, embed_in=16, embed_params_per_dim=68
    )
    rng = np.random.default_rng(0)
    layers, dims, heads, mlp = (rng.integers(1, top + 1, size=(100, 3)) for top in (8, 96, 8, 256))
    specs = [
        SubModelSpec(int(n), int(d), (int(h),) * int(n), (int(m),) * int(n))
        for n, d, h, m in zip(layers.ravel(), dims.ravel(), heads.ravel(), mlp.ravel(), strict=True)
    ]
    assert uniform_flops(base, layers, dims, heads, mlp).ravel().tolist() == [flops(s, base) for s in specs]
    assert uniform_memory_bytes(base, layers, dims, heads, mlp).ravel().tolist() == [
        memory_bytes(s, base) for s in specs
    ]


@pytest.mark.parametrize(
    "bad",
    [
        dict(layers=0, dim=8, heads=(), mlp=()),
        dict(layers=2, dim=8, heads=(1,), mlp=(4, 4)),
        dict(layers=1, dim=8, heads=(0,), mlp=(4,)),
    ],
)
def test_submodel_spec_rejects_impossible_shapes(bad):
    with pytest.raises(ValueError):
        SubModelSpec(**bad)
