"""Transformer and sub-model specs, with the FLOPs ω(C) and memory φ(C) estimators (paper §III-B).

Pure: no torch. The planner and the plan validator use these without loading any model.

A teacher is `TransformerSpec(L, d, h, D)` plus the few facts of its family that FLOPs and memory
depend on (tokens per request, head width, embedding size); a sub-model is
`SubModelSpec(l, d, heads[l], mlp[l])`, read against the teacher it is cut from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

Count = int | np.ndarray  # one spec's number, or the same number for an array of uniform-layer specs


@dataclass(frozen=True)
class LayerShape:
    """What sets one layer's cost besides its kept units: each unit stands for `scale` teacher
    channels, heads or neurons (2^s in Swin's stage s), over `tokens` tokens, each query attending
    `attended` of them."""

    scale: int
    tokens: int
    attended: int


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
    # Hierarchical families (Swin): layers per stage, and the tokens one query attends (a window).
    # Stage s has tokens/4^s tokens and 2^s times the width of every unit (channels, heads, neurons):
    # `dim`, `heads` and `mlp` count stage 0's, and a sub-model keeps the same share of every stage.
    # () is one stage where every token attends every other (ViT, BERT, ...).
    stages: tuple[int, ...] = ()
    window_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(int(n) for n in self.stages))  # a JSON list in tables
        if self.stages and sum(self.stages) != self.layers:
            raise ValueError(f"stages {self.stages} do not add up to {self.layers} layers")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (a latency table's provenance); `TransformerSpec(**d)` reads them back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    def feature_dim(self, dim: int) -> int:
        """Width of the final tokens of a sub-model of `dim` channels: the last stage's."""
        return dim * self.layer_shapes()[-1].scale

    def layer_shapes(self) -> list[LayerShape]:
        """Each teacher layer's unit scale, tokens and tokens a query attends."""
        if not self.stages:
            return [LayerShape(1, self.tokens, self.tokens)] * self.layers
        shapes = []
        for s, depth in enumerate(self.stages):
            tokens = self.tokens // 4**s
            shapes += [LayerShape(2**s, tokens, min(self.window_tokens or tokens, tokens))] * depth
        return shapes

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


def _block_flops(base: TransformerSpec, shape: LayerShape, dim: Count, attn: Count, mlp: Count) -> Count:
    """Matmul FLOPs of one block of width `dim`, attention width `attn` (heads × head_dim) and MLP
    width `mlp` (units of its stage, `shape.scale` channels each): plain arithmetic, so the same
    formula serves one spec and arrays of them."""
    tokens, m = shape.tokens, shape.scale
    dim, attn, mlp = dim * m, attn * m, mlp * m
    return (
        2 * tokens * dim * 3 * attn  # q, k, v projections
        + 2 * 2 * tokens * shape.attended * attn  # scores q·kᵀ and the weighted sum over v
        + 2 * tokens * attn * dim  # output projection
        + 2 * (base.mlp_up + 1) * tokens * dim * mlp
    )  # MLP up (one or two, gated) and down


def _merge_flops(base: TransformerSpec, dim: Count) -> Count:
    """Swin's patch merging before each stage s ≥ 1: 4 neighbours' channels to the stage's width."""
    shapes = _stage_shapes(base)
    return sum(2 * b.tokens * 4 * (dim * a.scale) * (dim * b.scale) for a, b in pairwise(shapes))


def _stage_shapes(base: TransformerSpec) -> list[LayerShape]:
    shapes = base.layer_shapes()
    starts = [sum(base.stages[:s]) for s in range(len(base.stages))]
    return [shapes[i] for i in starts]


def _outside_flops(base: TransformerSpec, dim: Count) -> Count:
    """The embedding matmul, patch merging and the task head (on the last stage's width)."""
    last = base.layer_shapes()[-1].scale
    return 2 * base.tokens * base.embed_in * dim + _merge_flops(base, dim) + 2 * dim * last * base.classes


def _block_parameters(base: TransformerSpec, shape: LayerShape, dim: Count, attn: Count, mlp: Count) -> Count:
    """One block's parameters (biases in every linear unless the family has none; a windowed
    family's relative-position table, one column per head)."""
    bias, m = int(base.linear_bias), shape.scale
    dim, attn, mlp = dim * m, attn * m, mlp * m
    table: Count = 0
    if base.window_tokens:
        side = int(round(base.window_tokens**0.5))
        table = (2 * side - 1) ** 2 * (attn // base.head_dim)
    return (
        (dim * 3 * attn + bias * 3 * attn)
        + (attn * dim + bias * dim)  # qkv, out projection
        + base.mlp_up * (dim * mlp + bias * mlp)
        + (mlp * dim + bias * dim)  # MLP
        + base.block_norm_params_per_dim * dim  # two norms
        + table
    )


def _outside_parameters(base: TransformerSpec, dim: Count) -> Count:
    """Embeddings, patch merging, the norms outside the blocks, and the task head (the final norm
    and the head read the last stage's width)."""
    shapes = _stage_shapes(base)
    merges = sum(4 * dim * a.scale * (2 + dim * b.scale) for a, b in pairwise(shapes))
    last = dim * base.layer_shapes()[-1].scale
    return dim * base.embed_params_per_dim + merges + last * (base.norm_params_per_dim + base.classes) + base.classes


def _block_activations(base: TransformerSpec, shape: LayerShape, dim: Count, heads: Count, mlp: Count) -> Count:
    """Values live in one block for one request, attention scores included."""
    s, m = shape.tokens, shape.scale
    return s * (2 * dim * m + 3 * heads * m * base.head_dim + base.mlp_up * mlp * m) + heads * m * s * shape.attended


def _sub_shapes(sub: SubModelSpec, base: TransformerSpec) -> list[LayerShape]:
    """The shape of each of a sub-model's layers: its k-th layer is in the teacher's k-th layer's
    stage (a policy with more layers than the teacher, which C1 refuses, repeats the last)."""
    shapes = base.layer_shapes()
    return [shapes[min(k, len(shapes) - 1)] for k in range(sub.layers)]


def flops(sub: SubModelSpec, base: TransformerSpec) -> int:
    """ω(C): multiply-adds ×2 of one request (batch 1) through embedding, blocks and head.

    Counts the matmuls, which are where the time goes (appendix A); norms, softmax and GELU are
    O(S·d) and left out, which keeps ω within a few percent of a real count.
    """
    shapes = _sub_shapes(sub, base)
    return int(
        _outside_flops(base, sub.dim)
        + sum(
            _block_flops(base, shapes[k], sub.dim, h * base.head_dim, m)
            for k, (h, m) in enumerate(zip(sub.heads, sub.mlp, strict=True))
        )
    )


def parameters(sub: SubModelSpec, base: TransformerSpec) -> int:
    """Parameter count of the sub-model, task head included (biases in every linear)."""
    shapes = _sub_shapes(sub, base)
    return int(
        _outside_parameters(base, sub.dim)
        + sum(
            _block_parameters(base, shapes[k], sub.dim, h * base.head_dim, m)
            for k, (h, m) in enumerate(zip(sub.heads, sub.mlp, strict=True))
        )
    )


def activation_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """Peak activations of one request: the widest layer's live tensors, attention scores included."""
    shapes = _sub_shapes(sub, base)
    widest = max(
        int(_block_activations(base, shapes[k], sub.dim, h, m))
        for k, (h, m) in enumerate(zip(sub.heads, sub.mlp, strict=True))
    )
    return widest * bytes_per_value


def memory_bytes(sub: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 4) -> int:
    """φ(C): weights plus peak activations of one request, in bytes (the runtime's own overhead,
    e.g. the TensorRT or ORT arena, is the device budget's slack, not modelled here)."""
    return parameters(sub, base) * bytes_per_value + activation_bytes(sub, base, bytes_per_value)


def _per_stage(base: TransformerSpec, layers: np.ndarray) -> list[tuple[LayerShape, np.ndarray]]:
    """(shape, how many of the first `layers` layers are in that stage) per stage: the uniform
    encoding's layers are a prefix of the stages (Swin's sub-models keep every layer)."""
    if not base.stages:
        return [(base.layer_shapes()[0], layers)]
    out, start = [], 0
    for shape, depth in zip(_stage_shapes(base), base.stages, strict=True):
        out.append((shape, np.clip(layers - start, 0, depth)))
        start += depth
    return out


def uniform_flops(
    base: TransformerSpec, layers: np.ndarray, dim: np.ndarray, heads: np.ndarray, mlp: np.ndarray
) -> np.ndarray:
    """`flops` of many sub-models at once, each with the same head count and MLP width in every
    one of its layers (the search's encoding): integer arrays of one shape in, ω per entry out."""
    blocks = sum(
        n * _block_flops(base, shape, dim, heads * base.head_dim, mlp) for shape, n in _per_stage(base, layers)
    )
    return np.asarray(_outside_flops(base, dim) + blocks)


def uniform_memory_bytes(
    base: TransformerSpec,
    layers: np.ndarray,
    dim: np.ndarray,
    heads: np.ndarray,
    mlp: np.ndarray,
    bytes_per_value: int = 4,
) -> np.ndarray:
    """`memory_bytes` of many uniform-layer sub-models at once (see `uniform_flops`)."""
    stages = _per_stage(base, layers)
    weights = _outside_parameters(base, dim) + sum(
        n * _block_parameters(base, shape, dim, heads * base.head_dim, mlp) for shape, n in stages
    )
    peak = np.max(
        np.stack(
            [np.broadcast_to(_block_activations(base, shape, dim, heads, mlp), np.shape(dim)) for shape, _ in stages]
        ),
        axis=0,
    )
    return np.asarray(weights * bytes_per_value + peak * bytes_per_value)


def smallest_submodel(base: TransformerSpec, layers: int = 1) -> SubModelSpec:
    """The least any device can run: `layers` layers of one head and one MLP neuron, one head's width."""
    return SubModelSpec(layers, min(base.head_dim, base.dim), (1,) * layers, (1,) * layers)
