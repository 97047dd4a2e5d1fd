"""Transformer and sub-model specs, with the FLOPs ω(C) and memory φ(C) estimators (paper §III-B).

Pure: no torch. The planner and the plan validator use these without loading any model.

A teacher is `TransformerSpec(L, d, h, D)` plus the few facts of its family that FLOPs and memory
depend on (tokens per request, head width, embedding size); a sub-model is
`SubModelSpec(l, d, heads[l], mlp[l])`, read against the teacher it is cut from.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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

    def full(self) -> "SubModelSpec":
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

    def to_dict(self) -> dict:
        return {"layers": self.layers, "dim": self.dim, "heads": list(self.heads), "mlp": list(self.mlp)}

    @classmethod
    def from_dict(cls, data: dict) -> "SubModelSpec":
        return cls(int(data["layers"]), int(data["dim"]), tuple(data["heads"]), tuple(data["mlp"]))


def flops(sub: SubModelSpec, base: TransformerSpec) -> int:
    """ω(C): multiply-adds ×2 of one request (batch 1) through embedding, blocks and head.

    Counts the matmuls, which are where the time goes (appendix A); norms, softmax and GELU are
    O(S·d) and left out, which keeps ω within a few percent of a real count.
    """
    s, d, hd = base.tokens, sub.dim, base.head_dim
    total = 2 * s * base.embed_in * d
    for h, m in zip(sub.heads, sub.mlp):
        a = h * hd
        total += 2 * s * d * 3 * a  # q, k, v projections
        total += 2 * 2 * s * s * a  # scores q·kᵀ and the weighted sum over v
        total += 2 * s * a * d  # output projection
        total += 2 * 2 * s * d * m  # MLP up and down
    return total + 2 * d * base.classes


def parameters(sub: SubModelSpec, base: TransformerSpec) -> int:
    """Parameter count of the sub-model, task head included (biases in every linear)."""
    d, hd = sub.dim, base.head_dim
    total = d * (base.embed_params_per_dim + base.norm_params_per_dim)
    for h, m in zip(sub.heads, sub.mlp):
        a = h * hd
        total += (d * 3 * a + 3 * a) + (a * d + d)  # qkv, out projection
        total += (d * m + m) + (m * d + d)  # MLP
        total += 4 * d  # two norms
    return total + d * base.classes + base.classes


def activation_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """Peak activations of one request: the widest layer's live tensors, attention scores included."""
    s, hd = base.tokens, base.head_dim
    widest = max(s * (2 * sub.dim + 3 * h * hd + m) + h * s * s for h, m in zip(sub.heads, sub.mlp))
    return widest * bytes_per_value


def memory_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """φ(C): weights plus peak activations of one request, in bytes (the runtime's own overhead,
    e.g. the TensorRT or ORT arena, is the device budget's slack, not modelled here)."""
    return parameters(sub, base) * bytes_per_value + activation_bytes(sub, base, bytes_per_value)


def smallest_submodel(base: TransformerSpec) -> SubModelSpec:
    """The least any device can run: one layer, one head, one MLP neuron, one head's width."""
    return SubModelSpec(1, min(base.head_dim, base.dim), (1,), (1,))
