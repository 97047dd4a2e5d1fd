"""DeBo and its baselines on a synthetic three-device cluster (seconds, no models)."""
from __future__ import annotations

import numpy as np

from cofc.compiler.planning.objective import DeviceModel, Evaluator, capacity_loss, violations
from cofc.compiler.planning.search import SearchSpace, debo, random_search, uniform_policy, uniform_search
from cofc.compiler.planning.spec import TransformerSpec, flops

BASE = TransformerSpec(layers=6, dim=96, heads=6, mlp=192, head_dim=16, tokens=50, classes=10,
                       embed_in=16, embed_params_per_dim=68)
TEACHER_FLOPS = flops(BASE.full(), BASE)


def cluster():
    def dev(name, mflops_per_ms, link, central=False):
        return DeviceModel(name, lambda s, k=mflops_per_ms: 0.2 + flops(s, BASE) / 1e6 / k, link,
                           0.3 * TEACHER_FLOPS, 64 * 2 ** 20, mflops_per_ms * 1e6, central)
    return [dev("orin", 40, 2, True), dev("tx2", 25, 2), dev("nano", 10, 1)]


class StrictEvaluator(Evaluator):
    """Fails the test if the search ever hands it an infeasible policy."""

    def __call__(self, policy):
        assert not violations(policy, self.devices, self.base), "infeasible policy was evaluated"
        return super().__call__(policy)


def make():
    return SearchSpace(BASE, 3), StrictEvaluator(cluster(), BASE, capacity_loss(BASE), delta=0.5)


def test_proposals_satisfy_c1_to_c4_by_construction():
    space, _ = make()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        policy = space.decode(space.propose(rng))
        assert sum(s.dim for s in policy) <= 96 and sum(s.heads[0] for s in policy) <= 6
        assert sum(s.mlp[0] for s in policy) <= 192 and all(1 <= s.layers <= 6 for s in policy)


def test_encode_decode_round_trip():
    space, _ = make()
    x = space.propose(np.random.default_rng(3))
    assert np.array_equal(space.encode(space.decode(x)), x)


def test_debo_spends_exactly_its_budget_on_feasible_policies():
    space, ev = make()
    result = debo(space, ev, initial=5, iterations=10, seed=0)
    assert len(result.history) == ev.calls == 15
    assert len({e.policy for e in result.history}) == 15  # never pays twice for one policy


def test_debo_beats_random_search_with_the_same_budget():
    space, ev = make()
    wins = 0
    for seed in range(3):
        d = debo(space, ev, initial=10, iterations=30, seed=seed).best.objective
        r = random_search(space, ev, budget=40, seed=seed).best.objective
        wins += d < r
    assert wins == 3


def test_uniform_policy_splits_evenly():
    space, ev = make()
    policy = uniform_policy(space, ev)
    assert len({(s.dim, s.heads[0], s.mlp[0], s.layers) for s in policy}) == 1
    assert policy[0].dim == 32 and policy[0].heads[0] == 2 and policy[0].mlp[0] == 60
    assert len(uniform_search(space, ev).history) == 1
