"""timm VisionTransformer (ViT, DeiT): the image family.

A teacher is a timm VisionTransformer built from the record's constructor arguments and weights (a
cofc teacher file), a timm model name with pretrained weights from timm's cache, or a timm model
name with a checkpoint file fine-tuned elsewhere (`.pth`/`.pt`/`.bin` state dict, or
`.safetensors`). The last two take image size and normalisation from timm's config of that name,
which timm knows offline; the plan may set either. Pooling and head are timm's own (class token
or average, then fc_norm and head), so every ViT teacher's device feature is `model.pool`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
        return timm_teacher(record, VIT)

    def spec(self, model: nn.Module) -> TransformerSpec:
        blocks = list(model.blocks)
        heads = {b.attn.num_heads for b in blocks}
        widths = {b.mlp.fc1.out_features for b in blocks}
        if len(heads) != 1 or len(widths) != 1:
            raise ValueError("a teacher must have the same heads and MLP width in every layer")
        d = model.embed_dim
        embed_params = sum(p.numel() for p in model.patch_embed.parameters())
        embed_params += model.pos_embed.numel() + sum(
            t.numel() for t in (model.cls_token, model.reg_token) if t is not None
        )
        norm_params = sum(p.numel() for m in (model.norm, model.fc_norm) for p in m.parameters())
        return TransformerSpec(
            layers=len(blocks),
            dim=d,
            heads=heads.pop(),
            mlp=widths.pop(),
            head_dim=blocks[0].attn.head_dim,
            tokens=model.patch_embed.num_patches + model.num_prefix_tokens,
            classes=model.num_classes,
            embed_in=model.patch_embed.proj.weight[0].numel(),
            embed_params_per_dim=embed_params // d,
            norm_params_per_dim=norm_params // d,
        )

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        head_dim = teacher.blocks[0].attn.head_dim
        model = VisionTransformer(embed_dim=sub.dim, depth=sub.layers, num_heads=1, mlp_ratio=1.0, **_arch(teacher))
        like = teacher.blocks[0]  # every teacher block has the same layer types (bias, dtype)
        for block, heads, width in zip(model.blocks, sub.heads, sub.mlp, strict=True):
            attn = block.attn
            attn.num_heads, attn.head_dim, attn.attn_dim = heads, head_dim, heads * head_dim
            attn.scale = head_dim**-0.5
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


def pretrained(record: dict[str, Any], kind: type[nn.Module]) -> nn.Module:
    """A pretrained timm model of class `kind` with a new task head; fills in the record's
    preprocessing."""
    import timm

    arch = record["arch"]
    try:
        model = timm.create_model(
            arch["source"], pretrained=True, num_classes=arch["num_classes"], img_size=arch["img_size"]
        )
    except Exception as exc:  # unknown name, or weights not in the local cache (no network here)
        raise CofcError(f"cannot load timm model {arch['source']!r}: {exc}") from None
    if type(model) is not kind and not (kind is VisionTransformer and isinstance(model, kind)):
        raise CofcError(f"timm model {arch['source']!r} is a {type(model).__name__}, not a {kind.__name__}")
    cfg = model.pretrained_cfg
    record["preprocess"].update(mean=list(cfg["mean"]), std=list(cfg["std"]))
    record["preprocess"].setdefault("interpolation", cfg.get("interpolation") or "bilinear")
    record["preprocess"].setdefault("crop_pct", float(cfg.get("crop_pct") or 1.0))
    return model


@dataclass(frozen=True)
class TimmKind:
    """What tells the timm families' teachers apart: the model class, the key of the head's
    weight (its rows count the classes), model names to suggest, and why a model timm built for
    a name is not one the family splits (None: it is)."""

    cls: type[nn.Module]
    head_weight: str
    examples: str
    refuse: Callable[[nn.Module, str], str | None]


def _not_plain_vit(model: nn.Module, name: str) -> str | None:
    from timm.models.deit import VisionTransformerDistilled

    if isinstance(model, VisionTransformer) and not isinstance(model, VisionTransformerDistilled):
        return None
    return (
        f"timm model {name!r} is a {type(model).__name__}; cofc splits plain "
        "VisionTransformers (ViT, DeiT without a distillation head)"
    )


VIT = TimmKind(VisionTransformer, "head.weight", "deit_tiny_patch16_224, vit_small_patch16_224", _not_plain_vit)


def timm_teacher(record: dict[str, Any], kind: TimmKind) -> nn.Module:
    """A teacher of a timm family from its record: a timm model name and a checkpoint file, a name
    with timm's cached pretrained weights, or constructor arguments and weights (a teacher file)."""
    arch = record["arch"]
    if "timm" in arch:  # a timm model name and a checkpoint file
        return _from_checkpoint(record, kind)
    if "source" in arch:  # a timm model name: pretrained weights from timm's cache
        return pretrained(record, kind.cls)
    model = kind.cls(**arch)
    if record.get("state_dict"):
        model.load_state_dict(record["state_dict"])
    return model


def _from_checkpoint(record: dict[str, Any], kind: TimmKind) -> nn.Module:
    """timm model `arch['timm']` with the weights of `arch['weights']`, loaded exactly (every key,
    every shape). Fills in the record: the class count (the checkpoint's head rows unless the plan
    gave it), the image side, and what the plan left out of mean, std, resize interpolation and
    crop fraction, from timm's config of that name."""
    import timm

    arch = record["arch"]
    name, path = arch["timm"], Path(arch["weights"])
    if not timm.is_model(name):
        raise CofcError(f"timm has no model named {name!r} (e.g. {kind.examples})")
    state = _read_weights(path)
    classes = arch.get("num_classes")
    if classes is None:
        if not isinstance(state.get(kind.head_weight), torch.Tensor):
            raise CofcError(f"{path}: no {kind.head_weight} to count the classes by; set teacher.classes")
        classes = int(state[kind.head_weight].shape[0])
    size = {"img_size": arch["img_size"]} if arch.get("img_size") else {}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=classes, **size)
    except Exception as exc:
        raise CofcError(f"cannot build timm model {name!r}: {exc}") from None
    if (why := kind.refuse(model, name)) is not None:
        raise CofcError(why)
    _load_exactly(model, state, path, name)
    fill_preprocess(record, model, name)
    arch.update(num_classes=classes, img_size=model.patch_embed.img_size[0])
    return model


def fill_preprocess(record: dict[str, Any], model: nn.Module, name: str) -> None:
    """What the plan left out of mean, std, resize interpolation and crop fraction, from timm's
    config of model `name` (shared by the timm families)."""
    prep, cfg = record["preprocess"], model.pretrained_cfg
    channels = model.patch_embed.proj.in_channels
    for key in ("mean", "std"):
        prep[key] = list(prep.get(key) or cfg[key])
        if len(prep[key]) not in (1, channels):
            raise CofcError(f"teacher.{key} has {len(prep[key])} values; {name} takes {channels} channels")
    prep.setdefault("interpolation", cfg.get("interpolation") or "bilinear")
    prep.setdefault("crop_pct", float(cfg.get("crop_pct") or 1.0))


_NESTED = ("model", "state_dict", "model_ema", "state_dict_ema")  # how training scripts wrap weights


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's state dict, unwrapped from a training script's dict and a DDP
    'module.' prefix; never unpickles code (weights_only)."""
    if not path.is_file():
        raise CofcError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as exc:
            raise CofcError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CofcError(f"{path}: not a weights file torch can load without running code ({first})") from None
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in _NESTED if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        what = f"keys {', '.join(map(str, list(state)[:3]))}" if isinstance(state, dict) else type(state).__name__
        raise CofcError(f"{path}: not a state dict of tensors ({what})")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _load_exactly(model: VisionTransformer, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Every key and shape must match: a checkpoint of another model is refused, not half-loaded."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [k for k in target if k in state and state[k].shape != target[k].shape]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})")
    for k in shapes[:2]:
        problems.append(f"{k} is {tuple(state[k].shape)}, the model's {tuple(target[k].shape)}")
    hint = ""  # when the model is the right one at another size or class count: the field to set
    if not (missing or unexpected) and "pos_embed" in shapes:
        hint = " (teacher.input_size: the image side it was trained at)"
    elif not (missing or unexpected) and "head.weight" in shapes:
        hint = " (teacher.classes: the checkpoint's class count)"
    raise CofcError(f"{path}: does not fit timm model {name}: {'; '.join(problems)}{hint}")


def _arch(model: VisionTransformer) -> dict[str, Any]:
    """The constructor arguments, other than size, that make a model of the teacher's kind."""
    return dict(
        img_size=model.patch_embed.img_size,
        patch_size=model.patch_embed.patch_size,
        in_chans=model.patch_embed.proj.in_channels,
        num_classes=model.num_classes,
        global_pool=model.global_pool,
        class_token=model.has_class_token,
        reg_tokens=model.num_reg_tokens,
        no_embed_class=model.no_embed_class,
        qkv_bias=model.blocks[0].attn.qkv.bias is not None,
        fc_norm=not isinstance(model.fc_norm, nn.Identity),
        final_norm=not (isinstance(model.fc_norm, nn.Identity) and isinstance(model.norm, nn.Identity)),
    )
