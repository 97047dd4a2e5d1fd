"""Which teacher units each sub-model takes: the snake draft and the disjointness C2–C4 ask for."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cofc.compiler.planning.slices import Importance, plan_slices, snake_draft
from cofc.compiler.planning.spec import SubModelSpec


def random_importance(layers=6, heads=6, mlp=192, dim=96, seed=0) -> Importance:
    rng = np.random.default_rng(seed)
    return Importance(rng.random((layers, heads)), rng.random((layers, mlp)), rng.random(dim), rng.random(layers))


def test_snake_draft_deals_fairly_and_disjointly():
    scores = np.arange(12, 0, -1, dtype=float)  # unit 0 is the best
    dealt = snake_draft(scores, [3, 3, 3])
    assert dealt == [(0, 5, 6), (1, 4, 7), (2, 3, 8)]  # 1,2,3,3,2,1,1,2,3: each gets one of the top 3
    assert snake_draft(scores, [1, 2, 0]) == [(0,), (1, 2), ()]
    with pytest.raises(ValueError):
        snake_draft(scores, [5, 5, 5])


@pytest.mark.parametrize("seed", range(5))
def test_slices_are_disjoint_where_c2_to_c4_require(seed):
    rng = np.random.default_rng(seed)
    imp = random_importance(seed=seed)
    policy = [SubModelSpec(int(n), 32, (2,) * int(n), (64,) * int(n)) for n in rng.integers(1, 7, size=3)]
    slices = plan_slices(policy, imp)
    channels = [set(s.channels) for s in slices]
    assert all(not (a & b) for a, b in itertools.combinations(channels, 2))  # C2: disjoint channels
    for layer in range(6):
        holders = [s for s in slices if layer in s.layers]
        heads = [set(s.heads[s.layers.index(layer)]) for s in holders]
        neurons = [set(s.neurons[s.layers.index(layer)]) for s in holders]
        for group in (heads, neurons):  # C3, C4: disjoint within each teacher layer
            assert all(not (a & b) for a, b in itertools.combinations(group, 2))
    for s, spec in zip(slices, policy, strict=True):
        assert s.spec == spec
        assert list(s.layers) == sorted(np.argsort(-imp.layers)[: spec.layers])  # most important layers


def test_policy_needing_more_heads_than_a_layer_has_is_refused():
    policy = [SubModelSpec(1, 16, (4,), (8,)), SubModelSpec(1, 16, (4,), (8,))]
    with pytest.raises(ValueError, match="teacher layer"):
        plan_slices(policy, random_importance())


def test_importance_round_trips_through_its_dict():
    imp = random_importance(seed=3)
    again = Importance.from_dict(imp.to_dict())
    for name in ("heads", "neurons", "channels", "layers"):
        np.testing.assert_array_equal(getattr(again, name), getattr(imp, name))
