"""`fill` on a hand-worked example: the idle device grows into the critical path, one step of the
search's encoding at a time, and stops where the path, C1, C3 or C4 stop it."""

from __future__ import annotations

from cofc.compiler.planning.fill import fill
from cofc.compiler.planning.objective import DeviceModel
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops

# Two layers, two 32-wide heads, MLP 32 (the encoding moves it in steps of 32/16 = 2), 4 tokens.
BASE = TransformerSpec(layers=2, dim=64, heads=2, mlp=32, head_dim=32, tokens=4, classes=3)
SPACE = SearchSpace(BASE, 2)
FAST, SLOW = SubModelSpec.uniform(1, 32, 1, 8), SubModelSpec.uniform(2, 32, 1, 8)


def fast_ms(s: SubModelSpec) -> float:
    return s.layers + 0.5 * s.dim / 32 + 0.25 * s.mean_heads + 0.25 * s.mean_mlp


def slow_ms(s: SubModelSpec) -> float:
    return 3 * (s.layers + 0.5 * s.dim / 32 + 0.25 * s.mean_heads) + 0.01 * s.mean_mlp


def devices(fast_flops: float = 1e12) -> list[DeviceModel]:
    return [
        DeviceModel("fast", fast_ms, 100.0, fast_flops, 1e12, 1.0, central=True),
        DeviceModel("slow", slow_ms, 8.0, 1e12, 1e12, 1.0),
    ]


def test_the_idle_device_grows_until_the_critical_path_stops_it():
    # slow is the critical path: 3·(2 + 0.5 + 0.25) + 0.08, then 32 float32 back over 8 Mb/s
    # (0.128 ms) = 8.458 ms. fast takes 3.75 ms. Its widths and heads cannot grow (C2: 32 + 32 =
    # 64; C3: 1 + 1 = 2 heads in layer 1); a second layer (4.75 ms) has more FLOPs than two more
    # MLP channels (4.25 ms), then its MLP grows by 2 while 2.75 + 0.25·D ≤ 8.458: to 22, short of
    # C4's 24. slow can take no step: a third layer breaks C1, MLP 10 takes 8.478 ms.
    assert fill((FAST, SLOW), devices(), SPACE) == (SubModelSpec.uniform(2, 32, 1, 22), SLOW)


def test_a_device_at_its_flops_budget_stays_as_it_was():
    assert fill((FAST, SLOW), devices(fast_flops=flops(FAST, BASE)), SPACE) == (FAST, SLOW)


def test_a_staged_teachers_worker_pays_for_its_last_stages_wider_feature():
    """A two-stage teacher (Swin-like): the feature a worker sends is its last stage's, 2 × 32 = 64
    floats, 2.048 ms over 1 Mb/s (a first-stage width would be 1.024). slow, now central, is the
    critical path at 3·(2 + 0.5 + 0.25) + 0.08 = 8.33 ms (central's t2 is 0 here); fast, a worker
    that must keep both layers, grows its MLP while 2 + 0.5 + 0.25 + 0.25·D + 2.048 ≤ 8.33: to 14
    (18 if it were charged the first stage's width)."""
    staged = TransformerSpec(layers=2, dim=64, heads=2, mlp=32, head_dim=32, tokens=16, classes=3, stages=(1, 1))
    pair = (SubModelSpec.uniform(2, 32, 1, 8), SubModelSpec.uniform(2, 32, 1, 8))
    central_slow = [
        DeviceModel("slow", slow_ms, 100.0, 1e12, 1e12, 1.0, central=True),
        DeviceModel("fast", fast_ms, 1.0, 1e12, 1e12, 1.0),
    ]
    grown = fill(pair, central_slow, SearchSpace(staged, 2, min_layers=2))
    assert grown == (pair[0], SubModelSpec.uniform(2, 32, 1, 14))
