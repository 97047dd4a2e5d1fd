"""The evaluator (paper §III-B): latency T of a policy (eq. 3–6), constraints C1–C6 (eq. 8), and
the objective Ψ = L_val + δ·T. Pure: specs, device models and a loss function in, numbers out.

Two readings made concrete here:
  t2  bytes that really cross a worker's link per request: the raw input central forwards to it
      (uint8 pixels or UTF-8 text, runtime/preprocess.py) and the pooled feature it sends back,
      d_n values of FEATURE_BYTES each (devices pool before sending, DESIGN.md); eq. 5 counts
      only the feature because the paper's devices already hold the input. Central sends nothing.
  t3  eq. 6 with M = 1 (features arrive pooled) and the aggregator mapping d_agg = Σ d_n to the
      teacher's width d, whose task head is reused: 2·d_agg·d + 2·d·classes FLOPs at the central
      device's throughput g, which is read off its own latency table (FLOPs per ms).
  the runtime's own cost (issue 32), measured per device by tools/message_costs.py and kept in its
      latency table: a worker's message path (ZeroMQ, decoding, unpacking at its CPU share) on top
      of eq. 5's bytes / rate, central's sending and reading of each worker's message before and
      after its own sub-model (its t2), and the aggregator call's fixed cost in t3. Eq. 5 alone
      predicted 0.06–0.15 ms where the bench measured 0.6–1.7 ms. A table without them costs 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, overload

import numpy as np

from cofc.compiler.planning.spec import (
    SubModelSpec,
    TransformerSpec,
    flops,
    memory_bytes,
    uniform_flops,
    uniform_memory_bytes,
)

FEATURE_BYTES = 4  # float32 pooled feature
Policy = tuple[SubModelSpec, ...]


@dataclass(frozen=True)
class RuntimeCost:
    """The runtime's cost per request on one device beyond eq. 5 and 6 (tools/message_costs.py)."""

    message_ms: float = 0.0  # a worker's round trip at its CPU share with no compute
    byte_ms: float = 0.0  # and per request byte beyond that
    relay_ms: float = 0.0  # central's own CPU per worker message (send the request, read the feature)
    fuse_ms: float = 0.0  # one aggregator call's fixed cost, when central


@dataclass(frozen=True)
class DeviceModel:
    """What the planner knows of one device."""

    name: str
    predict_ms: Callable[[SubModelSpec], float]  # t1, from its latency predictor
    link_mbps: float  # r_n
    max_flops: float  # Ω_n
    memory_bytes: float  # Φ_n
    flops_per_ms: float  # g, effective throughput (used for the central device's t3)
    central: bool = False
    predict_batch: Callable[[Sequence[SubModelSpec]], np.ndarray] | None = None  # t1 of many specs in one call
    runtime: RuntimeCost = RuntimeCost()

    def predict_many(self, specs: Sequence[SubModelSpec]) -> np.ndarray:
        """t1 of each spec: one batched prediction where the predictor offers it."""
        if self.predict_batch is not None:
            return np.asarray(self.predict_batch(specs), dtype=float)
        return np.array([self.predict_ms(s) for s in specs], dtype=float)


@dataclass(frozen=True)
class Latency:
    t1: tuple[float, ...]
    t2: tuple[float, ...]
    t3: float

    @property
    def total(self) -> float:
        """Eq. 3: the slowest device's compute and transfer, then aggregation."""
        return max(a + b for a, b in zip(self.t1, self.t2, strict=True)) + self.t3


Bytes = TypeVar("Bytes", float, np.ndarray)  # one transfer's size, or an array of them


def transfer_ms(nbytes: Bytes, link_mbps: float) -> Bytes:
    """Eq. 5: |X_n| / r_n, in ms."""
    return nbytes * 8 / (link_mbps * 1e6) * 1e3


def aggregation_flops(policy: Sequence[SubModelSpec], base: TransformerSpec) -> int:
    d_agg, d = sum(base.feature_dim(s.dim) for s in policy), base.feature_dim(base.dim)  # final widths
    return 2 * d_agg * d + 2 * d * base.classes


@overload
def t2_ms(device: DeviceModel, dim: int, input_bytes: int, workers: int) -> float: ...
@overload
def t2_ms(device: DeviceModel, dim: np.ndarray, input_bytes: int, workers: int) -> np.ndarray | float: ...
def t2_ms(device: DeviceModel, dim: int | np.ndarray, input_bytes: int, workers: int) -> float | np.ndarray:
    """t2 of a device whose sub-model's feature is `dim` wide (a number, or an array of them): a worker's raw
    input forwarded to it and its pooled feature back over its link, plus its message path; the
    central device's handling of its `workers`' messages (module docstring)."""
    r = device.runtime
    if device.central:
        return workers * r.relay_ms
    fixed = r.message_ms + r.byte_ms * input_bytes
    if isinstance(dim, np.ndarray):
        return transfer_ms(input_bytes + dim * FEATURE_BYTES, device.link_mbps) + fixed
    return transfer_ms(float(input_bytes + dim * FEATURE_BYTES), device.link_mbps) + fixed


def t3_ms(policy: Sequence[SubModelSpec], devices: Sequence[DeviceModel], base: TransformerSpec) -> float:
    """Eq. 6: the aggregation at the central device's throughput, plus its call's fixed cost."""
    central = next(d for d in devices if d.central)
    return aggregation_flops(policy, base) / central.flops_per_ms + central.runtime.fuse_ms


def device_ms(device: DeviceModel, policy: Policy, n: int, base: TransformerSpec, input_bytes: int = 0) -> float:
    """Device n's own predicted t1 + t2 under `policy` (what eq. 3 takes the max of, before any
    wait at central): from a request's arrival to its feature at central. Its feature is its last
    stage's width (a Swin's is 8× its first stage's)."""
    spec = policy[n]
    return float(device.predict_ms(spec) + t2_ms(device, base.feature_dim(spec.dim), input_bytes, len(policy) - 1))


def latency(
    policy: Sequence[SubModelSpec], devices: Sequence[DeviceModel], base: TransformerSpec, input_bytes: int = 0
) -> Latency:
    """Each device's t1 and t2 as the runtime shows them: central reads a worker's feature only
    once its own sub-model is done, so a worker that finishes sooner waits there, and its t2 (as
    the bench measures it) is at least that wait. Eq. 3's T is the same either way."""
    t1 = tuple(d.predict_ms(s) for s, d in zip(policy, devices, strict=True))
    t2 = [
        float(t2_ms(d, base.feature_dim(s.dim), input_bytes, len(devices) - 1))
        for s, d in zip(policy, devices, strict=True)
    ]
    c = next(n for n, d in enumerate(devices) if d.central)
    t2 = [t if n == c else max(t, t1[c] + t2[c] - t1[n]) for n, t in enumerate(t2)]
    return Latency(t1, tuple(t2), t3_ms(policy, devices, base))


def total_latency(
    policies: Sequence[Policy], devices: Sequence[DeviceModel], base: TransformerSpec, input_bytes: int = 0
) -> np.ndarray:
    """Eq. 3's T of many policies at once (`latency(...).total` of each), every device's t1 from
    one batched prediction: the deadline screen of a thousand candidates costs one pass each."""
    slowest: np.ndarray = np.zeros(len(policies))
    for n, d in enumerate(devices):
        specs = [p[n] for p in policies]
        dims = np.array([base.feature_dim(s.dim) for s in specs])
        slowest = np.maximum(slowest, d.predict_many(specs) + t2_ms(d, dims, input_bytes, len(devices) - 1))
    total: np.ndarray = slowest + np.array([t3_ms(p, devices, base) for p in policies])
    return total


def violations(policy: Sequence[SubModelSpec], devices: Sequence[DeviceModel], base: TransformerSpec) -> list[str]:
    """Every broken constraint of eq. 8, each named; empty when the policy is feasible."""
    found = []
    if len(policy) != len(devices):
        return [f"policy has {len(policy)} sub-models for {len(devices)} devices"]
    for s, d in zip(policy, devices, strict=True):
        if s.layers > base.layers:
            found.append(f"C1: {d.name} has {s.layers} layers > L={base.layers}")
    if sum(s.dim for s in policy) > base.dim:
        found.append(f"C2: widths sum to {sum(s.dim for s in policy)} > d={base.dim}")
    for k in range(base.layers):
        heads = sum(s.heads[k] for s in policy if k < s.layers)
        if heads > base.heads:
            found.append(f"C3: layer {k + 1} heads sum to {heads} > h={base.heads}")
        width = sum(s.mlp[k] for s in policy if k < s.layers)
        if width > base.mlp:
            found.append(f"C4: layer {k + 1} MLP widths sum to {width} > D={base.mlp}")
    for s, d in zip(policy, devices, strict=True):
        if flops(s, base) > d.max_flops:
            found.append(f"C5: {d.name} needs {flops(s, base) / 1e6:.2f} MFLOPs > Ω={d.max_flops / 1e6:.2f}")
        if memory_bytes(s, base) > d.memory_bytes:
            found.append(f"C6: {d.name} needs {memory_bytes(s, base) / 2**20:.2f} MB > Φ={d.memory_bytes / 2**20:.2f}")
    return found


def feasible_uniform(
    layers: np.ndarray,
    dims: np.ndarray,
    heads: np.ndarray,
    mlp: np.ndarray,
    devices: Sequence[DeviceModel],
    base: TransformerSpec,
) -> np.ndarray:
    """C1–C6 of eq. 8 for n policies at once, each sub-model with the same head count and MLP width
    in every one of its layers (the search's encoding). Each argument is an (n, N) integer array
    of l_n, d_n, h_n, D_n (all ≥ 1), device n in column n; the answer is (n,) booleans, True
    where `violations` would find nothing. Written over arrays so that the search can screen a
    thousand candidates in one go instead of one spec at a time."""
    l, d, h, m = (np.asarray(a, dtype=np.int64) for a in (layers, dims, heads, mlp))  # noqa: E741 (eq. 8's l_n)
    if l.shape[1] != len(devices):
        raise ValueError(f"policies have {l.shape[1]} sub-models for {len(devices)} devices")
    kept = l[:, :, None] > np.arange(base.layers)  # (n, N, L): device's sub-model reaches layer k
    ok = np.asarray((l <= base.layers).all(1))  # C1
    ok &= d.sum(1) <= base.dim  # C2
    ok &= ((h[:, :, None] * kept).sum(1) <= base.heads).all(1)  # C3, in every layer k
    ok &= ((m[:, :, None] * kept).sum(1) <= base.mlp).all(1)  # C4, in every layer k
    ok &= (uniform_flops(base, l, d, h, m) <= np.array([v.max_flops for v in devices])).all(1)  # C5
    ok &= (uniform_memory_bytes(base, l, d, h, m) <= np.array([v.memory_bytes for v in devices])).all(1)  # C6
    return ok


@dataclass(frozen=True)
class Evaluation:
    policy: Policy
    loss: float  # L_val (eq. 7)
    latency: Latency
    objective: float  # Ψ = L_val + δ·T


class Evaluator:
    """Ψ(C) = L_val(C) + δ·T(C) for feasible policies; refuses infeasible ones (they must never
    be evaluated: the search filters them first). With `deadline_ms`, a policy whose T (eq. 3)
    exceeds it is infeasible too: a latency target as a constraint beside C1–C6, for a user with
    a deadline and for the single-model baseline that must answer as fast as a cluster."""

    def __init__(
        self,
        devices: Sequence[DeviceModel],
        base: TransformerSpec,
        val_loss: Callable[[Policy], float],
        delta: float,
        input_bytes: int = 0,
        deadline_ms: float | None = None,
    ):
        self.devices, self.base, self.val_loss, self.delta = tuple(devices), base, val_loss, delta
        self.input_bytes, self.deadline_ms = input_bytes, deadline_ms
        self.calls = 0

    def violations(self, policy: Sequence[SubModelSpec]) -> list[str]:
        """`violations` (C1–C6), then the deadline, each named."""
        found = violations(policy, self.devices, self.base)
        if not found and self.deadline_ms is not None:
            total = float(total_latency([tuple(policy)], self.devices, self.base, self.input_bytes)[0])
            if total > self.deadline_ms:
                found.append(f"deadline: T = {total:.2f} ms > {self.deadline_ms:g} ms")
        return found

    def feasible(self, policy: Sequence[SubModelSpec]) -> bool:
        return not self.violations(policy)

    def feasible_uniform(self, layers: np.ndarray, dims: np.ndarray, heads: np.ndarray, mlp: np.ndarray) -> np.ndarray:
        """`feasible` for many uniform-layer policies at once: C1–C6 over the arrays (see
        `feasible_uniform`), then the deadline for the policies that pass them."""
        ok = feasible_uniform(layers, dims, heads, mlp, self.devices, self.base)
        rows = np.flatnonzero(ok)
        if self.deadline_ms is not None and len(rows):
            policies = [
                tuple(SubModelSpec.uniform(*c) for c in zip(layers[i], dims[i], heads[i], mlp[i], strict=True))
                for i in rows
            ]
            ok[rows] = total_latency(policies, self.devices, self.base, self.input_bytes) <= self.deadline_ms
        return ok

    def __call__(self, policy: Sequence[SubModelSpec]) -> Evaluation:
        problems = self.violations(policy)
        if problems:
            raise ValueError("infeasible policy reached the evaluator: " + "; ".join(problems))
        self.calls += 1
        policy = tuple(policy)
        lat = latency(policy, self.devices, self.base, self.input_bytes)
        loss = self.val_loss(policy)
        return Evaluation(policy, loss, lat, loss + self.delta * lat.total)


def capacity_loss(base: TransformerSpec) -> Callable[[Policy], float]:
    """A stand-in for eq. 7 until the decomposition's validation loss is wired in: the mean over
    sub-models of log(ω(teacher)/ω(C_n)), which, like a validation loss, falls as sub-models
    keep more of the teacher. Same signature as the real proxy."""
    import math

    teacher = flops(base.full(), base)
    return lambda policy: sum(math.log(teacher / flops(s, base)) for s in policy) / len(policy)
