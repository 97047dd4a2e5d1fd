"""Hugging Face T5 encoders (Flan-T5 through `T5EncoderModel`): pre-norm blocks with RMSNorm,
no biases, a gated-GELU MLP (Flan-T5: wi_0, wi_1, wo; plain T5: wi, wo) and one relative-position
bias table shared by every layer.

The bias. The teacher's table lives in block 0 (`block.0.layer.0.SelfAttention.relative_attention_bias`)
and HF's `T5Stack` hands the bias block 0 computed to every later layer. As for MPNet
(mpnet.py's docstring: why), a sub-model gives each layer its own table, cut from the teacher's
as the columns of that layer's heads (`_hf.PerLayerBiasAdapter`), and `PerLayerBiasStack`
computes each layer's bias from its own table. T5 does not scale q·kᵀ (its initialisation does),
so a head's attention needs no width-dependent scale.

The head. A linear layer on the mean of the real tokens' final states (what sentence-T5 pools,
and what a text-to-text model has in place of a classification token). A teacher is a backbone
from a local folder (`save_pretrained` of a T5EncoderModel or a whole T5 model: the decoder is
ignored) or a config with random weights (tests), plus that head. No T5 weights install here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import T5Config, T5EncoderModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.t5.modeling_t5 import T5Stack

from cofc.compiler.models.adapters._hf import (
    HEAD_ROLES,
    HfAdapter,
    PerLayerBiasAdapter,
    like_teacher,
)
from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, new_linear
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec

BIAS_TABLE = "layer.0.SelfAttention.relative_attention_bias"  # a block's own table (block 0's in the teacher)


class PerLayerBiasStack(nn.Module):
    """T5's encoder stack with one relative-position bias table per layer: the same embedding,
    blocks (so parameter names stay `encoder.block.k....`), final RMSNorm and mask as `T5Stack`;
    only the bias is each layer's own instead of block 0's."""

    def __init__(self, stack: T5Stack, heads: Sequence[int]):
        super().__init__()
        self.config = stack.config
        self.embed_tokens, self.block = stack.embed_tokens, stack.block
        self.final_layer_norm, self.dropout = stack.final_layer_norm, stack.dropout
        buckets = stack.config.relative_attention_num_buckets
        for block, h in zip(self.block, heads, strict=True):
            attention = block.layer[0].SelfAttention
            attention.has_relative_attention_bias = True
            attention.relative_attention_bias = nn.Embedding(buckets, h)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        hidden = self.dropout(inputs_embeds)
        n = hidden.shape[1]
        for block in self.block:
            bias = block.layer[0].SelfAttention.compute_bias(n, n, device=hidden.device)
            hidden = block(hidden, mask, bias)[0]
        return BaseModelOutput(last_hidden_state=self.dropout(self.final_layer_norm(hidden)))


class T5Adapter(PerLayerBiasAdapter, HfAdapter):
    family = "t5"
    backbone_class, config_class = T5EncoderModel, T5Config
    block_pattern = r"^backbone\.encoder\.block\.(\d+)\."
    blocks_path = "backbone.encoder.block"
    head_mixer = "layer.0.SelfAttention.o"
    mlp_out = "layer.1.DenseReluDense.wo"
    shared_bias, bias_table = f"backbone.encoder.block.0.{BIAS_TABLE}", BIAS_TABLE
    param_roles = (
        (r"^backbone\.(shared|encoder\.embed_tokens)\.weight$", (ALL, EMBED)),
        (r"\.SelfAttention\.(q|k|v)\.weight$", (HEADS, EMBED)),
        (r"\.SelfAttention\.o\.weight$", (EMBED, HEADS)),
        (r"\.DenseReluDense\.(wi|wi_0|wi_1)\.weight$", (MLP, EMBED)),
        (r"\.DenseReluDense\.wo\.weight$", (EMBED, MLP)),
        *HEAD_ROLES,
        (r"layer_norm\.weight$", (EMBED,)),
    )

    def spec(self, model: nn.Module) -> TransformerSpec:
        """Sub-models' per-layer bias tables are outside `spec.parameters` (as MPNet's)."""
        cfg = model.backbone.config
        return TransformerSpec(
            layers=cfg.num_layers,
            dim=cfg.d_model,
            heads=cfg.num_heads,
            mlp=cfg.d_ff,
            head_dim=cfg.d_kv,
            tokens=model.seq_len,
            classes=model.classifier.out_features,
            embed_params_per_dim=cfg.vocab_size,  # one token table, shared with the decoder's
            norm_params_per_dim=1,  # the final RMSNorm's scale
            mlp_up=2 if cfg.is_gated_act else 1,
            linear_bias=False,
            block_norm_params_per_dim=2,
        )

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        cfg = copy.deepcopy(teacher.backbone.config)
        cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff = sub.dim, sub.layers, 1, 1
        backbone = T5EncoderModel(cfg)
        like = teacher.backbone.encoder.block[0].layer
        for block, heads, width in zip(backbone.encoder.block, sub.heads, sub.mlp, strict=True):
            attention = block.layer[0].SelfAttention
            attention.n_heads, attention.inner_dim = heads, heads * cfg.d_kv
            for name in ("q", "k", "v"):
                setattr(attention, name, new_linear(sub.dim, attention.inner_dim, getattr(like[0].SelfAttention, name)))
            attention.o = new_linear(attention.inner_dim, sub.dim, like[0].SelfAttention.o)
            mlp, teacher_mlp = block.layer[1].DenseReluDense, like[1].DenseReluDense
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(mlp, name):
                    setattr(mlp, name, new_linear(sub.dim, width, getattr(teacher_mlp, name)))
            mlp.wo = new_linear(width, sub.dim, teacher_mlp.wo)
        backbone.encoder = PerLayerBiasStack(backbone.encoder, sub.heads)
        return like_teacher(teacher, backbone)
