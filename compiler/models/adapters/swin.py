"""timm SwinTransformer: the hierarchical image family (windowed attention, patch merging).

Units. Stage s of a Swin has 2^s times stage 0's channels, heads and MLP neurons (Swin-T: 96·2^s
channels, 3·2^s heads of 32, MLP 4× the width; the adapter refuses a teacher that does not
scale so). The planner counts stage 0's units (`TransformerSpec.stages`), and unit i of a stage s
stands for the 2^s teacher channels (heads, neurons) 2^s·i … 2^s·i + 2^s − 1 of that stage. So
a sub-model of d channels has d·2^s channels in stage s, and the sub-models' kept channel sets
are disjoint in every stage exactly when their stage-0 sets are (C2), likewise heads and neurons
(C3, C4). Importance ranks a unit by its teacher channels together (`unit_groups`).

Patch merging concatenates each 2×2 neighbourhood's channels of stage s−1 (timm's order: the
neighbour, then the channel), so its norm and reduction input keep the 4 copies of stage s−1's
kept channels. Each block's relative-position bias table keeps the columns of its kept heads.

Scope: a sub-model keeps every block, narrower (the plan's objective.min_layers must be the
depth), and the per-block hidden-state loss (calibration.layer_distill) is not offered: a block's
width differs per stage from what that loss compares."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from cofc.compiler.models.adapters.base import Inputs, ModelAdapter, new_linear
from cofc.compiler.models.adapters.vit import TimmKind, VitAdapter, timm_teacher
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec
from cofc.errors import CofcError

# Axis roles: which teacher indices a sub-model keeps along an axis, in the parameter's stage.
CHANNELS, HEADS, QKV, HEAD_COLUMNS, MLP, MERGED = "channels", "heads", "qkv", "head_columns", "mlp", "merged"
LAST = -1  # the stage of the final norm and the task head
ROLES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"^patch_embed\.proj\.weight$", (CHANNELS, None, None, None)),
    (r"\.attn\.relative_position_bias_table$", (None, HEAD_COLUMNS)),
    (r"\.attn\.qkv\.weight$", (QKV, CHANNELS)),
    (r"\.attn\.qkv\.bias$", (QKV,)),
    (r"\.attn\.proj\.weight$", (CHANNELS, HEADS)),
    (r"\.mlp\.fc1\.weight$", (MLP, CHANNELS)),
    (r"\.mlp\.fc1\.bias$", (MLP,)),
    (r"\.mlp\.fc2\.weight$", (CHANNELS, MLP)),
    (r"\.downsample\.norm\.(weight|bias)$", (MERGED,)),
    (r"\.downsample\.reduction\.weight$", (CHANNELS, MERGED)),
    (r"^head\.fc\.weight$", (None, CHANNELS)),
    (r"^head\.fc\.bias$", (None,)),
    # One value per channel of the parameter's stage: norms, projection biases.
    (r"(norm\d?|proj|fc2)\.(weight|bias)$", (CHANNELS,)),
)
_WHERE = re.compile(r"^layers\.(\d+)\.(?:blocks\.(\d+)\.)?")


class SwinAdapter(ModelAdapter):
    family = "swin"
    block_pattern = r"^layers\.\d+\.blocks\.(\d+)\."
    blocks_path = "layers"
    head_mixer = "attn.proj"
    mlp_out = "mlp.fc2"
    param_roles = ROLES

    def build_teacher(self, record: dict[str, Any]) -> nn.Module:
        return timm_teacher(record, SWIN)

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return [block for stage in model.layers for block in stage.blocks]

    def unit_groups(self, model: nn.Module) -> list[int]:
        """A unit of block k stands for 2^s teacher channels, heads or neurons (s: its stage)."""
        return [2**s for s, stage in enumerate(model.layers) for _ in stage.blocks]

    def spec(self, model: nn.Module) -> TransformerSpec:
        stages = list(model.layers)
        c, first = model.embed_dim, stages[0].blocks[0]
        h, hd, mlp = first.attn.num_heads, first.attn.qkv.out_features // (3 * first.attn.num_heads), first.mlp.fc1
        for s, stage in enumerate(stages):
            for block in stage.blocks:
                if (block.attn.num_heads, block.attn.proj.out_features, block.mlp.fc1.out_features) != (
                    h * 2**s,
                    c * 2**s,
                    mlp.out_features * 2**s,
                ):
                    raise CofcError(
                        "cofc splits Swins whose stage s has 2^s times stage 0's channels, heads and "
                        f"MLP width; stage {s} of this one does not"
                    )
        window = first.attn.window_area
        grid = model.patch_embed.grid_size
        embed_params = sum(p.numel() for p in model.patch_embed.parameters())
        return TransformerSpec(
            layers=sum(len(stage.blocks) for stage in stages),
            dim=c,
            heads=h,
            mlp=mlp.out_features,
            head_dim=hd,
            tokens=grid[0] * grid[1],
            classes=model.num_classes,
            embed_in=model.patch_embed.proj.weight[0].numel(),
            embed_params_per_dim=embed_params // c,
            norm_params_per_dim=2,
            stages=tuple(len(stage.blocks) for stage in stages),
            window_tokens=window,
        )

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        base = self.spec(teacher)
        if sub.layers != base.layers:
            raise ValueError(f"a Swin sub-model keeps all {base.layers} blocks, not {sub.layers}")
        model = SwinTransformer(embed_dim=sub.dim, num_heads=(1,) * len(base.stages), mlp_ratio=1.0, **_arch(teacher))
        like = teacher.layers[0].blocks[0]
        table_rows = like.attn.relative_position_bias_table.shape[0]
        for block, group, heads, width in zip(
            self.blocks(model), self.unit_groups(teacher), sub.heads, sub.mlp, strict=True
        ):
            attn, dim = block.attn, sub.dim * group
            attn.num_heads = heads * group
            attn_dim = attn.num_heads * base.head_dim
            attn.scale = base.head_dim**-0.5
            attn.qkv = new_linear(dim, 3 * attn_dim, like.attn.qkv)
            attn.proj = new_linear(attn_dim, dim, like.attn.proj)
            attn.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, attn.num_heads))
            block.mlp.fc1 = new_linear(dim, width * group, like.mlp.fc1)
            block.mlp.fc2 = new_linear(width * group, dim, like.mlp.fc2)
        return model

    @torch.no_grad()
    def copy_slices(self, teacher: nn.Module, student: nn.Module, slices: WeightSlices) -> None:
        """Copy the teacher's weights `slices` selects, each parameter read in its stage's units."""
        base, source = self.spec(teacher), teacher.state_dict()
        if slices.layers != tuple(range(base.layers)):
            raise ValueError("a Swin sub-model keeps every teacher block")
        starts = np.cumsum((0, *base.stages))
        for name, target in student.state_dict().items():
            where = _WHERE.match(name)
            stage = int(where.group(1)) if where else (LAST if name.startswith(("norm.", "head.")) else 0)
            stage = len(base.stages) - 1 if stage == LAST else stage
            layer = int(starts[stage]) + int(where.group(2)) if where and where.group(2) else None
            value = source[name]
            for axis, role in enumerate(self.roles_of(name)):
                if role is not None:
                    index = _index(role, stage, layer, slices, base)
                    value = value.index_select(axis, torch.as_tensor(index, dtype=torch.long))
            if value.shape != target.shape:
                raise ValueError(
                    f"{name}: sliced teacher shape {tuple(value.shape)} != sub-model shape {tuple(target.shape)}"
                )
            target.copy_(value)

    def preprocess(self, record: dict[str, Any], raw: np.ndarray) -> Inputs:
        return VitAdapter().preprocess(record, raw)  # the shared image path

    def token_features(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        """The last stage's tokens, (batch, tokens, channels) (timm's are (batch, H, W, channels))."""
        return model.forward_features(inputs["pixel_values"]).flatten(1, 2)

    def pool(self, model: nn.Module, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        return tokens.mean(1)  # timm's global average pool

    def head(self, model: nn.Module) -> nn.Module:
        return nn.Sequential(model.head.drop, model.head.fc)


def _expand(units: tuple[int, ...] | list[int], group: int) -> list[int]:
    """Teacher indices of `units`, each standing for `group` consecutive ones."""
    return [u * group + i for u in units for i in range(group)]


def _index(role: str, stage: int, layer: int | None, slices: WeightSlices, base: TransformerSpec) -> list[int]:
    group = 2**stage
    if role == CHANNELS:
        return _expand(slices.channels, group)
    if role == MERGED:  # 4 neighbours × stage s−1's channels
        width, kept = base.dim * group // 2, _expand(slices.channels, group // 2)
        return [n * width + c for n in range(4) for c in kept]
    assert layer is not None, f"{role} outside a block"
    if role == MLP:
        return _expand(slices.neurons[layer], group)
    heads = _expand(slices.heads[layer], group)
    if role == HEAD_COLUMNS:
        return heads
    per_head = _expand(heads, base.head_dim)
    if role == HEADS:
        return per_head
    width = base.heads * group * base.head_dim
    return [part * width + i for part in range(3) for i in per_head]  # QKV


def _not_swin(model: nn.Module, name: str) -> str | None:
    if type(model) is SwinTransformer:
        return None
    return f"timm model {name!r} is a {type(model).__name__}; the swin family takes SwinTransformer"


SWIN = TimmKind(SwinTransformer, "head.fc.weight", "swin_tiny_patch4_window7_224", _not_swin)


def _arch(model: SwinTransformer) -> dict[str, Any]:
    """The constructor arguments, other than width, that make a model of the teacher's kind."""
    first = model.layers[0].blocks[0]
    return dict(
        img_size=model.patch_embed.img_size,
        patch_size=model.patch_embed.patch_size,
        in_chans=model.patch_embed.proj.in_channels,
        num_classes=model.num_classes,
        depths=tuple(len(stage.blocks) for stage in model.layers),
        head_dim=first.attn.qkv.out_features // (3 * first.attn.num_heads),
        window_size=first.window_size,
        qkv_bias=first.attn.qkv.bias is not None,
    )
