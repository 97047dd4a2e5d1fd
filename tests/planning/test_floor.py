"""The floor of eq. 3 on a hand-worked example: each device's fastest sub-model of the search
space within its budgets, the slowest of them, and the speed-up ceiling they give."""

from __future__ import annotations

import pytest

from cofc.compiler.planning.floor import fastest_answer
from cofc.compiler.planning.objective import DeviceModel
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec

# Two layers, two 32-wide heads, MLP 32 (the search moves it in steps of 32/16 = 2), 4 tokens.
BASE = TransformerSpec(layers=2, dim=64, heads=2, mlp=32, head_dim=32, tokens=4, classes=3)
AGGREGATION_FLOPS = 2 * 64 * 64 + 2 * 64 * 3  # eq. 6: widths 32 + 32 to the teacher's 64, then the head


def fast_ms(s: SubModelSpec) -> float:
    """Not monotone in the MLP width: fastest at 8, as a fitted predictor can be."""
    return s.layers + 0.5 * s.dim / 32 + 0.25 * s.mean_heads + 0.01 * abs(s.mean_mlp - 8)


def slow_ms(s: SubModelSpec) -> float:
    return 3 * (s.layers + 0.5 * s.dim / 32 + 0.25 * s.mean_heads) + 0.01 * s.mean_mlp


def devices(fast_flops: float = 1e12) -> list[DeviceModel]:
    return [
        DeviceModel("fast", fast_ms, 100.0, fast_flops, 1e12, AGGREGATION_FLOPS, central=True),
        DeviceModel("slow", slow_ms, 8.0, 1e12, 1e12, 1.0),
    ]


def test_the_floor_is_the_slowest_devices_fastest_sub_model_plus_aggregation():
    floor = fastest_answer(SearchSpace(BASE, 2), devices(), input_bytes=1000)
    fast, slow = floor.devices
    assert fast.spec == SubModelSpec.uniform(1, 32, 1, 8) and fast.ms == pytest.approx(1.75)
    # slow: 3·(1 + 0.5 + 0.25) + 0.01·2, then 1000 input bytes and 32 float32 back over 8 Mb/s
    assert slow.spec == SubModelSpec.uniform(1, 32, 1, 2)
    assert slow.ms == pytest.approx(5.27 + 1128 * 8 / 8e6 * 1e3)
    assert (fast.teacher_ms, slow.teacher_ms) == pytest.approx((2 + 1 + 0.5 + 0.24, 3 * 3.5 + 0.32))
    assert floor.t3_ms == pytest.approx(1.0)  # the central device does AGGREGATION_FLOPS a ms
    assert floor.limiting is slow and floor.fastest is fast
    assert floor.total_ms == pytest.approx(6.398 + 1.0)
    assert floor.ceiling == pytest.approx(3.74 / 7.398)


def test_min_layers_and_the_flops_budget_bound_what_a_device_may_run():
    # One layer of width 32, one head and MLP 8 is 192 + 38,912 FLOPs at 4 tokens; MLP 6 is 38,080.
    floor = fastest_answer(SearchSpace(BASE, 2, min_layers=2), devices(fast_flops=39_000))
    assert floor is None  # two such layers exceed 39,000 FLOPs: fast can run nothing
    fast = fastest_answer(SearchSpace(BASE, 2), devices(fast_flops=39_000)).devices[0]
    assert fast.spec == SubModelSpec.uniform(1, 32, 1, 6) and fast.ms == pytest.approx(1.77)
    deep = fastest_answer(SearchSpace(BASE, 2, min_layers=2), devices()).devices[0]
    assert deep.spec == SubModelSpec.uniform(2, 32, 1, 8) and deep.ms == pytest.approx(2.75)
