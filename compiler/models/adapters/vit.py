"""timm VisionTransformer (ViT, DeiT): the image family."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, QKV, Inputs, ModelAdapter, new_linear
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec
from cofc.errors import CofcError


class VitAdapter(ModelAdapter):
    family = "vit"
    block_pattern = r"^blocks\.(\d+)\."
    blocks_path = "blocks"
    head_mixer = "attn.proj"
    mlp_out = "mlp.fc2"
    param_roles = (
        (r"^(cls_token|reg_token|pos_embed)$", (ALL, ALL, EMBED)),
        (r"^patch_embed\.proj\.weight$", (EMBED, ALL, ALL, ALL)),
        (r"\.attn\.qkv\.weight$", (QKV, EMBED)),
        (r"\.attn\.qkv\.bias$", (QKV,)),
        (r"\.attn\.proj\.weight$", (EMBED, HEADS)),
        (r"\.mlp\.fc1\.weight$", (MLP, EMBED)),
        (r"\.mlp\.fc1\.bias$", (MLP,)),
        (r"\.mlp\.fc2\.weight$", (EMBED, MLP)),
        (r"^head\.weight$", (ALL, EMBED)),
        (r"^head\.bias$", (ALL,)),
        # Everything else is one value per embedding channel: norms, projection biases.
        (r"(norm\d?|fc_norm|proj|fc2)\.(weight|bias)$", (EMBED,)),
    )

    def build_teacher(self, record: dict[str, Any]) -> nn.Module:
        arch = record["arch"]
        if "source" in arch:  # a timm model name: pretrained weights from timm's cache
            return _pretrained(record)
        model = VisionTransformer(**arch)
        if record.get("state_dict"):
            model.load_state_dict(record["state_dict"])
        return model

    def spec(self, model: nn.Module) -> TransformerSpec:
        blocks = list(model.blocks)
        heads = {b.attn.num_heads for b in blocks}
        widths = {b.mlp.fc1.out_features for b in blocks}
        if len(heads) != 1 or len(widths) != 1:
            raise ValueError("a teacher must have the same heads and MLP width in every layer")
        d = model.embed_dim
        embed_params = sum(p.numel() for p in model.patch_embed.parameters())
        embed_params += model.pos_embed.numel() + sum(
            t.numel() for t in (model.cls_token, model.reg_token) if t is not None)
        norm_params = sum(p.numel() for m in (model.norm, model.fc_norm) for p in m.parameters())
        return TransformerSpec(
            layers=len(blocks), dim=d, heads=heads.pop(), mlp=widths.pop(),
            head_dim=blocks[0].attn.head_dim,
            tokens=model.patch_embed.num_patches + model.num_prefix_tokens,
            classes=model.num_classes,
            embed_in=model.patch_embed.proj.weight[0].numel(),
            embed_params_per_dim=embed_params // d, norm_params_per_dim=norm_params // d)

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        head_dim = teacher.blocks[0].attn.head_dim
        model = VisionTransformer(embed_dim=sub.dim, depth=sub.layers, num_heads=1, mlp_ratio=1.0,
                                  **_arch(teacher))
        for block, heads, width, like in zip(model.blocks, sub.heads, sub.mlp, teacher.blocks):
            attn = block.attn
            attn.num_heads, attn.head_dim, attn.attn_dim = heads, head_dim, heads * head_dim
            attn.scale = head_dim ** -0.5
            attn.qkv = new_linear(sub.dim, 3 * attn.attn_dim, like.attn.qkv)
            attn.proj = new_linear(attn.attn_dim, sub.dim, like.attn.proj)
            block.mlp.fc1 = new_linear(sub.dim, width, like.mlp.fc1)
            block.mlp.fc2 = new_linear(width, sub.dim, like.mlp.fc2)
        return model

    def preprocess(self, record: dict[str, Any], raw: np.ndarray) -> Inputs:
        """uint8 (N, H, W) or (N, C, H, W) images -> normalised float (N, C, H, W)."""
        x = torch.from_numpy(np.ascontiguousarray(raw)).float().div_(255.0)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        prep = record["preprocess"]
        mean = torch.tensor(prep["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(prep["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return {"pixel_values": (x - mean) / std}

    def token_features(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        return model.forward_features(inputs["pixel_values"])

    def pool(self, model: nn.Module, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        return model.pool(tokens)

    def head(self, model: nn.Module) -> nn.Module:
        return nn.Sequential(model.fc_norm, model.head_drop, model.head)


def _pretrained(record: dict[str, Any]) -> nn.Module:
    """A pretrained timm ViT with a new task head; fills in the record's preprocessing."""
    import timm

    arch = record["arch"]
    try:
        model = timm.create_model(arch["source"], pretrained=True, num_classes=arch["num_classes"],
                                  img_size=arch["img_size"])
    except Exception as exc:  # unknown name, or weights not in the local cache (no network here)
        raise CofcError(f"cannot load timm model {arch['source']!r}: {exc}") from None
    if not isinstance(model, VisionTransformer):
        raise CofcError(f"timm model {arch['source']!r} is not a VisionTransformer")
    cfg = model.pretrained_cfg
    record["preprocess"].update(mean=list(cfg["mean"]), std=list(cfg["std"]))
    return model


def _arch(model: VisionTransformer) -> dict[str, Any]:
    """The constructor arguments, other than size, that make a model of the teacher's kind."""
    return dict(
        img_size=model.patch_embed.img_size, patch_size=model.patch_embed.patch_size,
        in_chans=model.patch_embed.proj.in_channels, num_classes=model.num_classes,
        global_pool=model.global_pool, class_token=model.has_class_token,
        reg_tokens=model.num_reg_tokens, no_embed_class=model.no_embed_class,
        qkv_bias=model.blocks[0].attn.qkv.bias is not None,
        fc_norm=not isinstance(model.fc_norm, nn.Identity),
        final_norm=not (isinstance(model.fc_norm, nn.Identity) and isinstance(model.norm, nn.Identity)))
