"""Fusing sub-model features at the central device (paper eq. 2), and the comparison fusions.

    X_agg = Pool(W · Concat(X_1..X_N) + b),   then the teacher's task head

Average pooling is linear, so Pool(W·Concat(X)+b) = W·Concat(Pool(X_1)..Pool(X_N)) + b: each
device pools its own tokens and sends one vector (DESIGN.md); `fuse_tokens` computes the
printed order and the tests check both agree. W maps d_agg = Σ d_n to the teacher's width, so
the teacher's head (norm and classifier) applies unchanged.

Missing devices: the aggregator takes a presence mask (batch, N), zeroes the features of absent
devices and adds a learned per-device correction, so it knows which inputs are missing; trained
with whole devices dropped at random (CATS's message dropout), it degrades gracefully.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from cofc.compiler.models.adapters.base import Inputs, ModelAdapter

FEATURES = ("pool", "first")  # the family's own pooling of final tokens, or the first (class) token


def device_feature(adapter: ModelAdapter, model: nn.Module, inputs: Inputs, kind: str) -> torch.Tensor:
    """The one vector per request that a device sends: (batch, d_n)."""
    tokens = adapter.token_features(model, inputs)
    if kind == "pool":
        return adapter.pool(model, tokens, inputs)
    if kind == "first":
        return tokens[:, 0]
    raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURES)}")


def submodel_logits(adapter: ModelAdapter, model: nn.Module, inputs: Inputs, kind: str) -> torch.Tensor:
    """A sub-model on its own: its feature through its own (sliced) copy of the task head."""
    return adapter.head(model)(device_feature(adapter, model, inputs, kind))


class Aggregator(nn.Module):
    def __init__(self, dims: Sequence[int], out_dim: int, head: nn.Module):
        super().__init__()
        self.dims = list(dims)
        self.proj = nn.Linear(sum(dims), out_dim)
        self.presence = nn.Linear(len(dims), out_dim, bias=False)
        nn.init.zeros_(self.presence.weight)
        self.head = copy.deepcopy(head)

    def expand(self, mask: torch.Tensor) -> torch.Tensor:
        """Presence mask (batch, N) -> per-channel mask (batch, d_agg)."""
        return mask.repeat_interleave(torch.as_tensor(self.dims, device=mask.device), dim=1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (batch, d_agg), the devices' pooled vectors concatenated; mask (batch, N) of 0/1."""
        fused = self.proj(features * self.expand(mask)) + self.presence(1.0 - mask)
        return self.head(fused)

    def fuse_tokens(self, tokens: Sequence[torch.Tensor], weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 2 as printed: Concat tokens, W·X + b per token, then Pool (a weighted average over
        tokens with `weights` (batch, S) summing to 1: plain mean, or the text padding mask)."""
        x = torch.cat(tuple(tokens), dim=-1) * self.expand(mask).unsqueeze(1)
        per_token = self.proj(x) + self.presence(1.0 - mask).unsqueeze(1)
        return self.head((per_token * weights.unsqueeze(-1)).sum(1))


def average_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(logits)).mean(0)


def majority_vote(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each sub-model votes its top class; ties go to the class with the larger summed probability."""
    stacked = torch.stack(list(logits))
    votes = nn.functional.one_hot(stacked.argmax(-1), stacked.shape[-1]).sum(0).float()
    return votes + 1e-3 * stacked.softmax(-1).mean(0)
