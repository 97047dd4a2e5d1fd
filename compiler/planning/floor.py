"""How soon a plan's devices can answer at best, before any search: the floor of eq. 3.

Each device's t1 + t2 has a least value over the search space: its fastest sub-model under its
latency predictor (not always the smallest one: a fitted predictor need not be monotone). Eq. 3
waits for the slowest device, so no policy answers sooner than the highest of those floors plus
the aggregation t3, and the speed-up over the teacher alone on its fastest device is capped
there, whatever calibration does. A slow device with a large per-request cost caps a whole
cluster: on the flagship (issue #17) the 0.3-core device's fastest 6-layer sub-model and its
message take 4.39 ms, so no policy is predicted faster than 7.3x the teacher on the 0.8-core
device (`cofc build --check examples/minilm_20ng.yaml`). Pure: numbers in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cofc.compiler.planning.objective import DeviceModel, Policy, feasible_uniform, t2_ms, t3_ms
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import SubModelSpec


@dataclass(frozen=True)
class DeviceFloor:
    name: str
    spec: SubModelSpec  # the device's fastest sub-model in the search space (within its C5, C6)
    ms: float  # t1 + t2 of that sub-model
    teacher_ms: float  # t1 of the whole teacher on this device

    def __str__(self) -> str:
        s = self.spec  # uniform: the search's encoding
        heads = f"{s.heads[0]} head" + ("s" if s.heads[0] > 1 else "")
        return (
            f"{self.name} answers in {self.ms:.2f} ms at the soonest ({s.layers} layers, width {s.dim}, "
            f"{heads}, MLP {s.mlp[0]}); the teacher alone takes {self.teacher_ms:.2f} ms on it"
        )


@dataclass(frozen=True)
class Floor:
    devices: tuple[DeviceFloor, ...]
    t3_ms: float  # eq. 6 for the devices' fastest sub-models

    @property
    def total_ms(self) -> float:
        """Eq. 3 at its least: no policy of the search space answers sooner."""
        return max(d.ms for d in self.devices) + self.t3_ms

    @property
    def policy(self) -> Policy:
        """Each device's fastest sub-model together: the search's start under a tight deadline."""
        return tuple(d.spec for d in self.devices)

    @property
    def limiting(self) -> DeviceFloor:
        """The device whose floor is the cluster's."""
        return max(self.devices, key=lambda d: d.ms)

    @property
    def fastest(self) -> DeviceFloor:
        """The device that runs the whole teacher soonest: the one a user would otherwise buy."""
        return min(self.devices, key=lambda d: d.teacher_ms)

    @property
    def ceiling(self) -> float:
        """The highest speed-up over the teacher alone on the fastest device that any policy can reach."""
        return self.fastest.teacher_ms / self.total_ms

    def __str__(self) -> str:
        return (
            f"no decomposition answers sooner than {self.total_ms:.2f} ms ({self.limiting.name}'s floor, eq. 3): "
            f"at most {self.ceiling:.1f}x the teacher alone on {self.fastest.name}"
        )


def _one_device_grid(space: SearchSpace) -> tuple[np.ndarray, ...]:
    """Every sub-model the search can give one device, as l, d, h, D arrays in the spec's units."""
    axes = [np.arange(lo, hi + 1) for lo, hi in zip(space.lower[:4], space.upper[:4], strict=True)]
    units = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 4)
    return units[:, 0], units[:, 1] * space.base.head_dim, units[:, 2], units[:, 3] * space.mlp_unit


def fastest_answer(space: SearchSpace, devices: Sequence[DeviceModel], input_bytes: int = 0) -> Floor | None:
    """Each device's fastest sub-model of `space` that fits its budgets (C5, C6), and the floor of
    eq. 3 they give; None when some device can run none, which the search then reports."""
    b = space.base
    grid = _one_device_grid(space)
    floors = []
    for d in devices:
        g_l, g_d, g_h, g_m = (a[:, None] for a in grid)
        fits = feasible_uniform(g_l, g_d, g_h, g_m, [d], b)  # one device alone: C1–C4 hold on the grid
        if not fits.any():
            return None
        layers, dims, heads, mlp = (a[fits] for a in grid)
        specs = [SubModelSpec.uniform(*c) for c in zip(layers, dims, heads, mlp, strict=True)]
        ms = d.predict_many(specs) + t2_ms(d, dims, input_bytes, len(devices) - 1)
        best = int(np.argmin(ms))
        floors.append(DeviceFloor(d.name, specs[best], float(ms[best]), float(d.predict_many([b.full()])[0])))
    return Floor(tuple(floors), t3_ms([f.spec for f in floors], devices, b))
