"""Hugging Face BertModel encoders (BERT, MiniLM): the text-classification family.

Two kinds of teacher. A cofc teacher file or a pretrained source gets a linear head on the mean of
the real tokens. A `save_pretrained` BertForSequenceClassification folder keeps its own head:
BERT pools with its pooler, dense + tanh on the first token, then applies `classifier`. The device
feature is the first token's final state (pooling "first"), and the pooler's dense + tanh is the
first part of the task head (`pre_classifier`), with the classifier after it: the pooler is not
linear, so it must run after the central device fuses the features, not on each device. The full
sub-model therefore runs exactly the folder model's computation, and reproduces its logits."""

from __future__ import annotations

import copy

from torch import nn
from transformers import BertConfig, BertModel

from cofc.compiler.models.adapters._hf import (
    HEAD_ROLES,
    HfAdapter,
    HfClassifier,
    HfFolderFamily,
    bert_config_spec,
    like_teacher,
)
from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, new_linear
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec


class BertAdapter(HfAdapter, HfFolderFamily):
    family = "bert"
    hf_class = "BertForSequenceClassification"
    backbone_class, config_class, backbone_kwargs = BertModel, BertConfig, {"add_pooling_layer": False}
    block_pattern = r"^backbone\.encoder\.layer\.(\d+)\."
    blocks_path = "backbone.encoder.layer"
    head_mixer = "attention.output.dense"
    mlp_out = "output.dense"
    param_roles = (
        (r"_embeddings\.weight$", (ALL, EMBED)),
        (r"\.attention\.self\.(query|key|value)\.weight$", (HEADS, EMBED)),
        (r"\.attention\.self\.(query|key|value)\.bias$", (HEADS,)),
        (r"\.attention\.output\.dense\.weight$", (EMBED, HEADS)),
        (r"\.intermediate\.dense\.weight$", (MLP, EMBED)),
        (r"\.intermediate\.dense\.bias$", (MLP,)),
        (r"\.output\.dense\.weight$", (EMBED, MLP)),
        *HEAD_ROLES,
        (r"(LayerNorm\.(weight|bias)|dense\.bias)$", (EMBED,)),
    )

    def from_hf(self, model: nn.Module, seq_len: int) -> HfClassifier:
        """BertForSequenceClassification: pooler (dense + tanh on the first token), classifier."""
        backbone, pooler = model.bert, model.bert.pooler
        backbone.pooler = None  # it moves into the head: the backbone ends at the final tokens
        wrapped = HfClassifier(backbone, model.config.num_labels, seq_len, "first", pre_classifier=True)
        wrapped.pre_classifier, wrapped.classifier = pooler.dense, model.classifier
        return wrapped

    def spec(self, model: nn.Module) -> TransformerSpec:
        return bert_config_spec(model)

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        cfg = copy.deepcopy(teacher.backbone.config)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads = sub.dim, sub.layers, 1
        backbone = BertModel(cfg, add_pooling_layer=False)
        like = teacher.backbone.encoder.layer[0]
        for layer, heads, width in zip(backbone.encoder.layer, sub.heads, sub.mlp, strict=True):
            attn = layer.attention.self
            attn.num_attention_heads, attn.attention_head_size = heads, head_dim
            attn.all_head_size, attn.scaling = heads * head_dim, head_dim**-0.5
            for name in ("query", "key", "value"):
                setattr(attn, name, new_linear(sub.dim, attn.all_head_size, getattr(like.attention.self, name)))
            layer.attention.output.dense = new_linear(attn.all_head_size, sub.dim, like.attention.output.dense)
            layer.intermediate.dense = new_linear(sub.dim, width, like.intermediate.dense)
            layer.output.dense = new_linear(width, sub.dim, like.output.dense)
        return like_teacher(teacher, backbone)
