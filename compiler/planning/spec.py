"""Transformer and sub-model specs, with the FLOPs ω(C) and memory φ(C) estimators (paper §III-B).

Pure: no torch. The planner and the plan validator use these without loading any model.

A teacher is `TransformerSpec(L, d, h, D)` plus the few facts of its family that FLOPs and memory
depend on (tokens per request, head width, embedding size); a sub-model is
`SubModelSpec(l, d, heads[l], mlp[l])`, read against the teacher it is cut from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Count = int | np.ndarray  # one spec's number, or the same number for an array of uniform-layer specs


@dataclass(frozen=True)
class TransformerSpec:
    layers: int  # L
    dim: int  # d, embedding width
    heads: int  # h, attention heads per layer
    mlp: int  # D, MLP hidden width per layer
    head_dim: int  # width of one head; kept by sub-models, so heads move whole
    tokens: int  # S, sequence length of one request (patches + prefix tokens, or text tokens)
    classes: int  # outputs of the task head
    embed_in: int = 0  # inputs per token of the embedding matmul (C·p·p for patches, 0 for lookups)
    embed_params_per_dim: int = 0  # embedding parameters per embedding channel (tables, pos, bias)
    norm_params_per_dim: int = 2  # parameters per channel of the norms outside the blocks
    mlp_up: int = 1  # MLP input projections: 2 for a gated MLP (T5's gated GELU: wi_0, wi_1)
    linear_bias: bool = True  # whether the blocks' linear layers have biases (T5's do not)
    block_norm_params_per_dim: int = 4  # two norms a block: 4 for LayerNorm, 2 for RMSNorm (T5)

    def full(self) -> SubModelSpec:
        """The sub-model that keeps everything: the teacher itself."""
        return SubModelSpec(self.layers, self.dim, (self.heads,) * self.layers, (self.mlp,) * self.layers)


@dataclass(frozen=True)
class SubModelSpec:
    layers: int  # l_n
    dim: int  # d_n
    heads: tuple[int, ...] = field(default=())  # h_n^k, k = 1..l_n
    mlp: tuple[int, ...] = field(default=())  # D_n^k, k = 1..l_n

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "mlp", tuple(int(m) for m in self.mlp))
        if self.layers < 1 or self.dim < 1:
            raise ValueError(f"a sub-model needs at least one layer and one channel: {self}")
        if len(self.heads) != self.layers or len(self.mlp) != self.layers:
            raise ValueError(f"heads and mlp need one entry per layer ({self.layers}): {self}")
        if min(self.heads) < 1 or min(self.mlp) < 1:
            raise ValueError(f"every layer needs at least one head and one MLP neuron: {self}")

    @property
    def mean_heads(self) -> float:
        """h̄, the predictor's per-layer average head count (appendix A)."""
        return sum(self.heads) / self.layers

    @property
    def mean_mlp(self) -> float:
        """D̄, the predictor's per-layer average MLP width (appendix A)."""
        return sum(self.mlp) / self.layers

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "dim": self.dim, "heads": list(self.heads), "mlp": list(self.mlp)}

    @classmethod
    def uniform(cls, layers: int, dim: int, heads: int, mlp: int) -> SubModelSpec:
        """The same head count and MLP width in every layer (the search's encoding)."""
        return cls(int(layers), int(dim), (int(heads),) * int(layers), (int(mlp),) * int(layers))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubModelSpec:
        return cls(int(data["layers"]), int(data["dim"]), tuple(data["heads"]), tuple(data["mlp"]))


def _block_flops(base: TransformerSpec, dim: Count, attn: Count, mlp: Count) -> Count:
    """Matmul FLOPs of one block of width `dim`, attention width `attn` (heads × head_dim) and MLP
    width `mlp`: plain arithmetic, so the same formula serves one spec and arrays of them."""
    tokens = base.tokens
    return (
        2 * tokens * dim * 3 * attn  # q, k, v projections
        + 2 * 2 * tokens * tokens * attn  # scores q·kᵀ and the weighted sum over v
        + 2 * tokens * attn * dim  # output projection
        + 2 * (base.mlp_up + 1) * tokens * dim * mlp
    )  # MLP up (one or two, gated) and down


def _outside_flops(base: TransformerSpec, dim: Count) -> Count:
    """The embedding matmul and the task head."""
    return 2 * base.tokens * base.embed_in * dim + 2 * dim * base.classes


def _block_parameters(base: TransformerSpec, dim: Count, attn: Count, mlp: Count) -> Count:
    """One block's parameters (biases in every linear unless the family has none)."""
    bias = int(base.linear_bias)
    return (
        (dim * 3 * attn + bias * 3 * attn)
        + (attn * dim + bias * dim)  # qkv, out projection
        + base.mlp_up * (dim * mlp + bias * mlp)
        + (mlp * dim + bias * dim)  # MLP
        + base.block_norm_params_per_dim * dim
    )  # two norms


def _outside_parameters(base: TransformerSpec, dim: Count) -> Count:
    """Embeddings, the norms outside the blocks, and the task head."""
    return dim * (base.embed_params_per_dim + base.norm_params_per_dim) + dim * base.classes + base.classes


def _block_activations(base: TransformerSpec, dim: Count, heads: Count, mlp: Count) -> Count:
    """Values live in one block for one request, attention scores included."""
    s = base.tokens
    return s * (2 * dim + 3 * heads * base.head_dim + base.mlp_up * mlp) + heads * s * s


def flops(sub: SubModelSpec, base: TransformerSpec) -> int:
    """ω(C): multiply-adds ×2 of one request (batch 1) through embedding, blocks and head.

    Counts the matmuls, which are where the time goes (appendix A); norms, softmax and GELU are
    O(S·d) and left out, which keeps ω within a few percent of a real count.
    """
    return int(
        _outside_flops(base, sub.dim)
        + sum(_block_flops(base, sub.dim, h * base.head_dim, m) for h, m in zip(sub.heads, sub.mlp, strict=True))
    )


def parameters(sub: SubModelSpec, base: TransformerSpec) -> int:
    """Parameter count of the sub-model, task head included (biases in every linear)."""
    return int(
        _outside_parameters(base, sub.dim)
        + sum(_block_parameters(base, sub.dim, h * base.head_dim, m) for h, m in zip(sub.heads, sub.mlp, strict=True))
    )


def activation_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """Peak activations of one request: the widest layer's live tensors, attention scores included."""
    widest = max(int(_block_activations(base, sub.dim, h, m)) for h, m in zip(sub.heads, sub.mlp, strict=True))
    return widest * bytes_per_value


def memory_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """φ(C): weights plus peak activations of one request, in bytes (the runtime's own overhead,
    e.g. the TensorRT or ORT arena, is the device budget's slack, not modelled here)."""
    return parameters(sub, base) * bytes_per_value + activation_bytes(sub, base, bytes_per_value)


def uniform_flops(
    base: TransformerSpec, layers: np.ndarray, dim: np.ndarray, heads: np.ndarray, mlp: np.ndarray
) -> np.ndarray:
    """`flops` of many sub-models at once, each with the same head count and MLP width in every
    one of its layers (the search's encoding): integer arrays of one shape in, ω per entry out."""
    return _outside_flops(base, dim) + layers * _block_flops(base, dim, heads * base.head_dim, mlp)


def uniform_memory_bytes(
    base: TransformerSpec,
    layers: np.ndarray,
    dim: np.ndarray,
    heads: np.ndarray,
    mlp: np.ndarray,
    bytes_per_value: int = 4,
) -> np.ndarray:
    """`memory_bytes` of many uniform-layer sub-models at once (see `uniform_flops`)."""
    weights = _outside_parameters(base, dim) + layers * _block_parameters(base, dim, heads * base.head_dim, mlp)
    return weights * bytes_per_value + _block_activations(base, dim, heads, mlp) * bytes_per_value


def smallest_submodel(base: TransformerSpec, layers: int = 1) -> SubModelSpec:
    """The least any device can run: `layers` layers of one head and one MLP neuron, one head's width."""
    return SubModelSpec(layers, min(base.head_dim, base.dim), (1,) * layers, (1,) * layers)
