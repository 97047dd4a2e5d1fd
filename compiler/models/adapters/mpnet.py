"""Hugging Face MPNetModel encoders (all-mpnet-base-v2): BERT-shaped post-norm blocks, plus one
relative-position bias.

The bias. MPNet's encoder holds ONE table, `encoder.relative_attention_bias` of shape
(buckets, heads): it buckets every query-key distance, looks the buckets up once, and adds the same
(heads, S, S) bias to the attention scores of every layer. Column j of the table belongs to head j
of every layer. A sub-model keeps different teacher heads in different layers (heads[k] per layer
k), so no single table with one column per kept head can serve all its layers.

Choice: a sub-model gives each layer its own table, `layer.k.attention.attn.relative_attention_bias`
of shape (buckets, h_k), cut from the teacher's table as the columns of that layer's heads; the
encoder (`PerLayerBiasEncoder`) buckets the distances once and each layer looks up its own table.
The alternative, keeping the whole teacher table once and index-selecting each layer's heads from
it, was rejected because
  - a sub-model would carry the bias columns of heads it does not have, so two sub-models would
    share (and calibration would train twice) weights that the paper's C3 gives to one of them;
    per-layer tables hold exactly the columns of the sub-model's own heads;
  - the head indices would be state beside the weights, while the build rebuilds sub-models from
    their spec and state dict alone (`build_submodel` + `load_state_dict`); a per-layer table's
    shape follows from the spec.
The price is buckets × Σh_k parameters instead of buckets × h (4,608 rather than 384 floats for a
whole 12-layer base model: 0.004% of it). The sub-model that keeps everything has 12 copies of the
teacher's table and computes exactly what the teacher does.

The teacher stays HF's own MPNetModel (shared table), so pretrained folders load unchanged. Since the
tables have no same-named parameter in the teacher, `copy_slices` cuts them itself
(`_hf.PerLayerBiasAdapter`, shared with T5) and leaves every other parameter to `param_roles`.

The head. A cofc teacher file or a pretrained source gets a linear head on the mean of the real
tokens (as sentence-transformers pools all-mpnet-base-v2; its final L2 normalisation is left out:
it would not commute with the fusion's linear map). A `save_pretrained`
MPNetForSequenceClassification folder keeps its own classification head: dense + tanh + out_proj
on the first token (<s>). The device feature is the first token's final state (pooling "first");
dense + tanh is the head's first part (`pre_classifier`, not linear, so it runs after fusion, at
the central device) and out_proj its classifier: the full sub-model reproduces the folder model's
logits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import MPNetConfig, MPNetModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

from cofc.compiler.models.adapters._hf import (
    HEAD_ROLES,
    HfAdapter,
    HfClassifier,
    HfFolderFamily,
    PerLayerBiasAdapter,
    bert_config_spec,
    like_teacher,
)
from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, new_linear
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec

BIAS_TABLE = "attention.attn.relative_attention_bias"  # a sub-model layer's own bias table


class PerLayerBiasEncoder(nn.Module):
    """MPNet's encoder with one relative-position bias table per layer (module docstring: why).

    Takes over an MPNetEncoder's layers, so parameter names stay `encoder.layer.k....` as in the
    teacher, and answers the calls MPNetModel makes to its encoder."""

    def __init__(self, encoder: MPNetEncoder, heads: Sequence[int]):
        super().__init__()
        self.config = encoder.config
        self.layer = encoder.layer
        self.num_buckets = encoder.config.relative_attention_num_buckets
        for layer, h in zip(self.layer, heads, strict=True):
            layer.attention.attn.relative_attention_bias = nn.Embedding(self.num_buckets, h)

    def buckets(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(S, S) bucket of each query-key distance, as MPNetEncoder.compute_position_bias."""
        n = hidden_states.size(1)
        positions = torch.arange(n, dtype=torch.long, device=hidden_states.device)
        return MPNetEncoder.relative_position_bucket(
            positions[None, :] - positions[:, None], num_buckets=self.num_buckets
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = False,
        **kwargs: Any,
    ):
        buckets = self.buckets(hidden_states)
        states, attentions = (), ()
        for layer in self.layer:
            if output_hidden_states:
                states += (hidden_states,)
            # (S, S, h_k) -> (1, h_k, S, S): broadcast over the batch, as the teacher's expand does.
            bias = layer.attention.attn.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)
            outputs = layer(hidden_states, attention_mask, bias, output_attentions=output_attentions, **kwargs)
            hidden_states = outputs[0]
            if output_attentions:
                attentions += (outputs[1],)
        if output_hidden_states:
            states += (hidden_states,)
        if not return_dict:
            return tuple(v for v in (hidden_states, states or None, attentions or None) if v is not None)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=states or None, attentions=attentions or None
        )


class MpnetAdapter(PerLayerBiasAdapter, HfAdapter, HfFolderFamily):
    family = "mpnet"
    hf_class = "MPNetForSequenceClassification"
    backbone_class, config_class, backbone_kwargs = MPNetModel, MPNetConfig, {"add_pooling_layer": False}
    block_pattern = r"^backbone\.encoder\.layer\.(\d+)\."
    blocks_path = "backbone.encoder.layer"
    head_mixer = "attention.attn.o"
    shared_bias, bias_table = "backbone.encoder.relative_attention_bias", BIAS_TABLE
    mlp_out = "output.dense"
    param_roles = (
        (r"_embeddings\.weight$", (ALL, EMBED)),
        (r"\.attention\.attn\.(q|k|v)\.weight$", (HEADS, EMBED)),
        (r"\.attention\.attn\.(q|k|v)\.bias$", (HEADS,)),
        (r"\.attention\.attn\.o\.weight$", (EMBED, HEADS)),
        (r"\.intermediate\.dense\.weight$", (MLP, EMBED)),
        (r"\.intermediate\.dense\.bias$", (MLP,)),
        (r"\.output\.dense\.weight$", (EMBED, MLP)),
        *HEAD_ROLES,
        (r"(LayerNorm\.(weight|bias)|attn\.o\.bias|dense\.bias)$", (EMBED,)),
    )

    def from_hf(self, model: nn.Module, seq_len: int) -> HfClassifier:
        """MPNetForSequenceClassification: dense + tanh + out_proj on the first token."""
        wrapped = HfClassifier(model.mpnet, model.config.num_labels, seq_len, "first", pre_classifier=True)
        wrapped.pre_classifier, wrapped.classifier = model.classifier.dense, model.classifier.out_proj
        return wrapped

    def max_tokens(self, config: Any) -> int:
        """Positions count from pad_token_id + 1 (RoBERTa-style), so that many fewer are usable."""
        return config.max_position_embeddings - (config.pad_token_id or 0) - 1

    def spec(self, model: nn.Module) -> TransformerSpec:
        """Sub-models' per-layer bias tables (buckets per kept head and layer) are outside
        `spec.parameters`: it has no per-head term, and they are 0.004% of a base model."""
        return bert_config_spec(model)

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        cfg = copy.deepcopy(teacher.backbone.config)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads = sub.dim, sub.layers, 1
        cfg.intermediate_size = max(sub.mlp)
        backbone = MPNetModel(cfg, add_pooling_layer=False)
        like = teacher.backbone.encoder.layer[0]
        for layer, heads, width in zip(backbone.encoder.layer, sub.heads, sub.mlp, strict=True):
            attn = layer.attention.attn
            attn.num_attention_heads, attn.attention_head_size = heads, head_dim
            attn.all_head_size = heads * head_dim
            for name in ("q", "k", "v"):
                setattr(attn, name, new_linear(sub.dim, attn.all_head_size, getattr(like.attention.attn, name)))
            attn.o = new_linear(attn.all_head_size, sub.dim, like.attention.attn.o)
            layer.intermediate.dense = new_linear(sub.dim, width, like.intermediate.dense)
            layer.output.dense = new_linear(width, sub.dim, like.output.dense)
        backbone.encoder = PerLayerBiasEncoder(backbone.encoder, sub.heads)
        return like_teacher(teacher, backbone)
