"""Which teacher units each sub-model of a policy C = {C_1..C_N} takes (paper appendix B1).

Pure, like the rest of the planner: unit importances and a policy in, index lists out. Cutting
the weights those lists name is the model side's job (`models/decompose.py`, the adapters).

The rule:
  layers    a sub-model with l_n < L layers keeps the l_n most important teacher layers, in
            their original order (the residual stream tolerates skipped layers; which ones to
            skip is what the importance ranking is for).
  channels, heads, neurons
            a snake draft: units in order of importance, the sub-models taking turns in
            1, 2, …, N, N, …, 2, 1 order, each until it has its quota (d_n, h_n^k, D_n^k).
            Every sub-model gets a fair share of the most important units, not the first one
            all of the best; what no quota asks for (the least important units) is dropped.
            For heads and neurons the draft runs per teacher layer, among the sub-models that
            keep that layer, starting one seat later on each layer so no sub-model always picks
            first.
So slices are disjoint exactly where C2–C4 ask: channels across all sub-models, heads and
neurons within each teacher layer. A policy that needs more of a layer's heads or neurons than
it has (possible when sub-models keep different layers) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec


@dataclass(frozen=True)
class Importance:
    """Scores of the teacher's units (`scoring/importance.py` measures them); higher matters more."""

    heads: np.ndarray  # (L, h)
    neurons: np.ndarray  # (L, D)
    channels: np.ndarray  # (d,)
    layers: np.ndarray  # (L,)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: getattr(self, k).tolist() for k in ("heads", "neurons", "channels", "layers")}

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> Importance:
        return cls(*(np.asarray(data[k], dtype=float) for k in ("heads", "neurons", "channels", "layers")))


@dataclass(frozen=True)
class WeightSlices:
    """Which parts of the teacher one sub-model takes: layers, channels, and per layer heads and
    MLP neurons (teacher indices, in the sub-model's order)."""

    layers: tuple[int, ...]
    channels: tuple[int, ...]
    heads: tuple[tuple[int, ...], ...]
    neurons: tuple[tuple[int, ...], ...]

    @property
    def spec(self) -> SubModelSpec:
        return SubModelSpec(
            len(self.layers), len(self.channels), tuple(len(h) for h in self.heads), tuple(len(n) for n in self.neurons)
        )

    @classmethod
    def full(cls, base: TransformerSpec) -> WeightSlices:
        """Everything, in the teacher's order: the sub-model this gives is the teacher."""
        return cls(
            tuple(range(base.layers)),
            tuple(range(base.dim)),
            (tuple(range(base.heads)),) * base.layers,
            (tuple(range(base.mlp)),) * base.layers,
        )


def snake_draft(scores: np.ndarray, quotas: Sequence[int], first: int = 0) -> list[tuple[int, ...]]:
    """Deal units (indices of `scores`, best first) to seats with `quotas`; each seat's units in
    ascending index order."""
    n = len(quotas)
    if sum(quotas) > len(scores):
        raise ValueError(f"quotas {list(quotas)} ask for more than the {len(scores)} units there are")
    order = [(first + i) % n for i in range(n)]
    order += order[::-1]
    taken: list[list[int]] = [[] for _ in range(n)]
    turn = 0
    for unit in np.argsort(-np.asarray(scores), kind="stable"):
        if all(len(t) == q for t, q in zip(taken, quotas, strict=True)):
            break
        while len(taken[order[turn % len(order)]]) == quotas[order[turn % len(order)]]:
            turn += 1
        taken[order[turn % len(order)]].append(int(unit))
        turn += 1
    return [tuple(sorted(t)) for t in taken]


def plan_slices(policy: Sequence[SubModelSpec], importance: Importance) -> list[WeightSlices]:
    """Which teacher layers, channels, heads and neurons each sub-model of `policy` takes."""
    n_layers = len(importance.layers)
    layers = []
    for spec in policy:
        if spec.layers > n_layers:
            raise ValueError(f"C1: a sub-model of {spec.layers} layers from a teacher of {n_layers}")
        best = np.argsort(-importance.layers, kind="stable")[: spec.layers]
        layers.append(tuple(sorted(int(j) for j in best)))
    channels = snake_draft(importance.channels, [s.dim for s in policy])
    heads: list[dict[int, tuple[int, ...]]] = [{} for _ in policy]  # sub-model -> teacher layer -> heads
    neurons: list[dict[int, tuple[int, ...]]] = [{} for _ in policy]
    for j in range(n_layers):
        seats = [n for n, kept in enumerate(layers) if j in kept]
        if not seats:
            continue
        position = {n: layers[n].index(j) for n in seats}
        for per_layer, scores, quotas in (
            (heads, importance.heads[j], [policy[n].heads[position[n]] for n in seats]),
            (neurons, importance.neurons[j], [policy[n].mlp[position[n]] for n in seats]),
        ):
            try:
                dealt = snake_draft(scores, quotas, first=j)
            except ValueError as exc:
                raise ValueError(f"teacher layer {j + 1}: {exc}") from None
            for n, units in zip(seats, dealt, strict=True):
                per_layer[n][j] = units
    return [
        WeightSlices(
            layers[n], channels[n], tuple(heads[n][j] for j in layers[n]), tuple(neurons[n][j] for j in layers[n])
        )
        for n in range(len(policy))
    ]
