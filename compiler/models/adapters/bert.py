"""Hugging Face BertModel encoders (BERT, MiniLM): the text-classification family."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel

from cofc.compiler.models.adapters.base import ALL, EMBED, HEADS, MLP, Inputs, ModelAdapter, new_linear
from cofc.compiler.models.adapters._hf import (HfClassifier, build_classifier, embedding_params_per_dim, load_backbone,
                                        masked_mean, tokenize)
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec


class BertAdapter(ModelAdapter):
    family = "bert"
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
        (r"^classifier\.weight$", (ALL, EMBED)),
        (r"^classifier\.bias$", (ALL,)),
        (r"(LayerNorm\.(weight|bias)|dense\.bias)$", (EMBED,)),
    )

    def build_teacher(self, record: dict[str, Any]) -> nn.Module:
        backbone = load_backbone(BertModel, BertConfig, record["arch"], add_pooling_layer=False)
        return build_classifier(backbone, record)

    def spec(self, model: nn.Module) -> TransformerSpec:
        cfg = model.backbone.config
        return TransformerSpec(
            layers=cfg.num_hidden_layers, dim=cfg.hidden_size, heads=cfg.num_attention_heads,
            mlp=cfg.intermediate_size, head_dim=cfg.hidden_size // cfg.num_attention_heads,
            tokens=model.seq_len, classes=model.classifier.out_features,
            embed_params_per_dim=embedding_params_per_dim(model.backbone.embeddings, cfg.hidden_size),
            norm_params_per_dim=0)

    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        cfg = copy.deepcopy(teacher.backbone.config)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads = sub.dim, sub.layers, 1
        backbone = BertModel(cfg, add_pooling_layer=False)
        like = teacher.backbone.encoder.layer[0]
        for layer, heads, width in zip(backbone.encoder.layer, sub.heads, sub.mlp):
            attn = layer.attention.self
            attn.num_attention_heads, attn.attention_head_size = heads, head_dim
            attn.all_head_size, attn.scaling = heads * head_dim, head_dim ** -0.5
            for name in ("query", "key", "value"):
                setattr(attn, name, new_linear(sub.dim, attn.all_head_size, getattr(like.attention.self, name)))
            layer.attention.output.dense = new_linear(attn.all_head_size, sub.dim, like.attention.output.dense)
            layer.intermediate.dense = new_linear(sub.dim, width, like.intermediate.dense)
            layer.output.dense = new_linear(width, sub.dim, like.output.dense)
        return HfClassifier(backbone, teacher.classifier.out_features, teacher.seq_len)

    def preprocess(self, record: dict[str, Any], raw: list[str]) -> Inputs:
        return tokenize(record, raw)

    def token_features(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        return model.backbone(input_ids=inputs["input_ids"],
                              attention_mask=inputs["attention_mask"]).last_hidden_state

    def pool(self, model: nn.Module, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        return masked_mean(tokens, inputs)

    def head(self, model: nn.Module) -> nn.Module:
        return model.classifier
