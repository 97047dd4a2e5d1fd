"""Hugging Face GPT2Model: the decoder family (causal attention, Conv1D weights stored (in, out)).

Every GPT2 teacher pools the last real token: under causal attention it is the only one that has
seen the whole input. A `save_pretrained` GPT2ForSequenceClassification folder does the same: it
applies `score` (linear, no bias) to the last non-pad token's final state; here the device feature
is that state (pooling "last", found from the attention mask of right-padded requests, which is
the last non-pad token whenever a text holds no pad token itself) and `score` is the classifier,
so the full sub-model reproduces the folder model's logits. No pretrained GPT2 exists offline
here: other GPT2 teachers are built from a config with random weights (export, profiling and
runtime tests) and tokenised with the record's tokenizer source."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn
from transformers import GPT2Config, GPT2Model
from transformers.pytorch_utils import Conv1D

from cofc.compiler.models.adapters._hf import (
    HEAD_ROLES,
    HfAdapter,
    HfClassifier,
    HfFolderFamily,
    embedding_params_per_dim,
    like_teacher,
)
from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, QKV
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec


class Gpt2Adapter(HfAdapter, HfFolderFamily):
    family = "gpt2"
    hf_class = "GPT2ForSequenceClassification"
    backbone_class, config_class, pooling = GPT2Model, GPT2Config, "last"
    block_pattern = r"^backbone\.h\.(\d+)\."
    blocks_path = "backbone.h"
    head_mixer = "attn.c_proj"
    mlp_out = "mlp.c_proj"
    param_roles = (
        (r"^backbone\.(wte|wpe)\.weight$", (ALL, EMBED)),
        (r"\.attn\.c_attn\.weight$", (EMBED, QKV)),
        (r"\.attn\.c_attn\.bias$", (QKV,)),
        (r"\.attn\.c_proj\.weight$", (HEADS, EMBED)),
        (r"\.mlp\.c_fc\.weight$", (EMBED, MLP)),
        (r"\.mlp\.c_fc\.bias$", (MLP,)),
        (r"\.mlp\.c_proj\.weight$", (MLP, EMBED)),
        *HEAD_ROLES,
        (r"(ln_\w+\.(weight|bias)|c_proj\.bias)$", (EMBED,)),
    )

    def from_hf(self, model: nn.Module, seq_len: int) -> HfClassifier:
        """GPT2ForSequenceClassification: `score` on the last non-pad token."""
        wrapped = HfClassifier(
            model.transformer, model.config.num_labels, seq_len, "last", bias=model.score.bias is not None
        )
        wrapped.classifier = model.score
        return wrapped

    def max_tokens(self, config: Any) -> int:
        return config.n_positions

    def spec(self, model: nn.Module) -> TransformerSpec:
        cfg, d = model.backbone.config, model.backbone.config.n_embd
        embeddings = nn.ModuleList([model.backbone.wte, model.backbone.wpe])
        return TransformerSpec(
            layers=cfg.n_layer,
            dim=d,
            heads=cfg.n_head,
            mlp=cfg.n_inner or 4 * d,
            head_dim=d // cfg.n_head,
            tokens=model.seq_len,
            classes=model.classifier.out_features,
            embed_params_per_dim=embedding_params_per_dim(embeddings, d),
            norm_params_per_dim=2,
        )

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        cfg = copy.deepcopy(teacher.backbone.config)
        head_dim = cfg.n_embd // cfg.n_head
        cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_inner = sub.dim, sub.layers, 1, max(sub.mlp)
        backbone = GPT2Model(cfg)
        for block, heads, width in zip(backbone.h, sub.heads, sub.mlp, strict=True):
            attn = block.attn
            attn.num_heads, attn.head_dim, attn.split_size = heads, head_dim, heads * head_dim
            if cfg.scale_attn_weights:
                attn.scaling = head_dim**-0.5 / (attn.layer_idx + 1 if cfg.scale_attn_by_inverse_layer_idx else 1)
            attn.c_attn = Conv1D(3 * attn.split_size, sub.dim)
            attn.c_proj = Conv1D(sub.dim, attn.split_size)
            block.mlp.c_fc = Conv1D(width, sub.dim)
            block.mlp.c_proj = Conv1D(sub.dim, width)
        return like_teacher(teacher, backbone)
