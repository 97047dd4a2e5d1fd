"""DeBo and its baselines on a synthetic three-device cluster (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from cofc.compiler.planning.floor import fastest_answer
from cofc.compiler.planning.objective import DeviceModel, Evaluator, capacity_loss, violations
from cofc.compiler.planning.search import (
    SearchSpace,
    debo,
    feasible_mask,
    random_search,
    sample_feasible,
    uniform_policy,
    uniform_search,
)
from cofc.compiler.planning.spec import TransformerSpec, flops, memory_bytes

BASE = TransformerSpec(
    layers=6, dim=96, heads=6, mlp=192, head_dim=16, tokens=50, classes=10, embed_in=16, embed_params_per_dim=68
)
TEACHER_FLOPS = flops(BASE.full(), BASE)
TEACHER_BYTES = memory_bytes(BASE.full(), BASE)


def cluster(max_flops=0.3 * TEACHER_FLOPS, memory=64 * 2**20):
    def dev(name, mflops_per_ms, link, central=False):
        return DeviceModel(
            name,
            lambda s, k=mflops_per_ms: 0.2 + flops(s, BASE) / 1e6 / k,
            link,
            max_flops,
            memory,
            mflops_per_ms * 1e6,
            central,
        )

    return [dev("orin", 40, 2, True), dev("tx2", 25, 2), dev("nano", 10, 1)]


# Budgets that a random proposal's sub-models break about a third of the time each (C5, C6).
TIGHT = dict(max_flops=0.05 * TEACHER_FLOPS, memory=0.06 * TEACHER_BYTES)


class StrictEvaluator(Evaluator):
    """Fails the test if the search ever hands it an infeasible policy."""

    def __call__(self, policy):
        assert not self.violations(policy), "infeasible policy was evaluated"
        return super().__call__(policy)


def make(**budget):
    return SearchSpace(BASE, 3), StrictEvaluator(cluster(**budget), BASE, capacity_loss(BASE), delta=0.5)


def test_proposals_satisfy_c1_to_c4_by_construction():
    space, _ = make()
    for x in space.propose(np.random.default_rng(0), 2000):
        policy = space.decode(x)
        assert sum(s.dim for s in policy) <= 96 and sum(s.heads[0] for s in policy) <= 6
        assert sum(s.mlp[0] for s in policy) <= 192 and all(1 <= s.layers <= 6 for s in policy)


def test_min_layers_bounds_every_policy_the_searches_try():
    space = SearchSpace(BASE, 3, min_layers=4)
    evaluator = StrictEvaluator(cluster(), BASE, capacity_loss(BASE), delta=0.5)
    assert all(s.layers >= 4 for x in space.propose(np.random.default_rng(0), 500) for s in space.decode(x))
    x = space.encode(uniform_policy(space, evaluator))
    assert all(y[0::4].min() >= 4 for y in space.neighbours(space.encode(space.decode([4, 2, 2, 4] * 3))))
    assert space.unit_cube(space.lower).max() == 0 and space.unit_cube(space.upper).min() == 1
    found = debo(space, evaluator, initial=4, iterations=4, seed=0)
    assert all(s.layers >= 4 for e in found.history for s in e.policy) and x[0::4].min() >= 4


def test_a_batch_of_proposals_draws_what_one_at_a_time_draws():
    space, _ = make()
    batch_rng, single_rng = np.random.default_rng(5), np.random.default_rng(5)
    batch = space.propose(batch_rng, 500)
    singles = np.concatenate([space.propose(single_rng, 1) for _ in range(500)])
    assert np.array_equal(batch, singles)
    assert batch_rng.bit_generator.state == single_rng.bit_generator.state


def test_encode_decode_round_trip():
    space, _ = make()
    x = space.propose(np.random.default_rng(3), 1)[0]
    assert np.array_equal(space.encode(space.decode(x)), x)


def test_vectorised_feasibility_equals_the_constraints_one_policy_at_a_time():
    """`feasible_mask` against `violations` (eq. 8 written out per spec) on 4,000 policies: random
    proposals on a tight cluster (C5, C6 decide) and random coordinates up to one layer past the
    teacher's (C1–C4 decide too)."""
    space, ev = make(**TIGHT)
    rng = np.random.default_rng(0)
    upper = space.upper + np.tile([1, 0, 0, 0], 3)
    xs = np.concatenate([space.propose(rng, 2000), rng.integers(1, upper + 1, size=(2000, len(upper)))])
    found = [violations(space.decode(x), ev.devices, ev.base) for x in xs]
    np.testing.assert_array_equal(feasible_mask(space, ev, xs), [not v for v in found])
    assert 0.1 < np.mean([not v for v in found]) < 0.9
    assert {v[:2] for problems in found for v in problems} == {"C1", "C2", "C3", "C4", "C5", "C6"}


def _one_at_a_time(space, ev, rng, count, exclude, max_tries):
    """What `sample_feasible` promises: draw one policy, keep it if it is new and `violations`
    finds nothing, until `count` are kept or `count · max_tries` are drawn."""
    found = {}
    for _ in range(count * max_tries):
        if len(found) == count:
            break
        x = space.propose(rng, 1)[0]
        key = x.tobytes()
        if key not in found and key not in exclude and not violations(space.decode(x), ev.devices, ev.base):
            found[key] = x
    return list(found.values())


@pytest.mark.parametrize("count,max_tries", [(200, 200), (300, 1)], ids=["enough-tries", "tries-run-out"])
def test_sampling_in_rounds_keeps_the_draws_of_one_at_a_time(count, max_tries):
    space, ev = make(**TIGHT)
    # The first 20 feasible policies of the same stream are excluded: both must skip them.
    exclude = {x.tobytes() for x in _one_at_a_time(space, ev, np.random.default_rng(1), 20, set(), 200)}
    rounds_rng, single_rng = np.random.default_rng(1), np.random.default_rng(1)
    got = sample_feasible(space, ev, rounds_rng, count, exclude, max_tries)
    want = _one_at_a_time(space, ev, single_rng, count, exclude, max_tries)
    assert [x.tolist() for x in got] == [x.tolist() for x in want]
    assert rounds_rng.bit_generator.state == single_rng.bit_generator.state
    assert (len(got) == count) == (max_tries > 1)


def test_debo_spends_exactly_its_budget_on_feasible_policies():
    space, ev = make()
    result = debo(space, ev, initial=5, iterations=10, seed=0)
    assert len(result.history) == ev.calls == 15
    assert len({e.policy for e in result.history}) == 15  # never pays twice for one policy


@pytest.mark.slow
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


def test_every_search_keeps_to_a_deadline():
    """With objective.max_ms, DeBo, random search and the uniform split evaluate only policies
    predicted within it (StrictEvaluator checks each), and DeBo still finds some."""
    space = SearchSpace(BASE, 3)
    free = StrictEvaluator(cluster(), BASE, capacity_loss(BASE), delta=0.5)
    totals = [e.latency.total for e in random_search(space, free, budget=40, seed=0).history]
    deadline = float(np.median(totals))  # about half of what the search would try breaks it
    ev = StrictEvaluator(cluster(), BASE, capacity_loss(BASE), delta=0.5, deadline_ms=deadline)
    found = debo(space, ev, initial=5, iterations=5, seed=0)
    assert len(found.history) == 10
    tried = found.history + random_search(space, ev, budget=20, seed=1).history + uniform_search(space, ev).history
    assert all(e.latency.total <= deadline for e in tried)


def test_debo_with_nothing_feasible_evaluates_nothing():
    """No policy meets the deadline: DeBo returns an empty history (the build stage then names the
    field) instead of modelling an empty set."""
    ev = StrictEvaluator(cluster(), BASE, capacity_loss(BASE), delta=0.5, deadline_ms=1e-3)
    assert debo(SearchSpace(BASE, 3), ev, initial=3, iterations=2, seed=0).history == []
    assert ev.calls == 0


def test_debo_starts_from_the_floor_under_a_deadline_random_proposals_miss():
    """Three identical compute-bound boards and a deadline 10% above their floor: a random
    proposal meets it only if every board draws a near-smallest sub-model, so none of 1,000 does
    and DeBo alone finds nothing; started from the floor's policy it evaluates it first, then
    climbs through its feasible neighbours, every one within the deadline."""
    boards = [
        DeviceModel(f"b{i}", lambda s: 0.2 + flops(s, BASE) / 2e6, 100, TEACHER_FLOPS, 2**26, 2e6, i == 0)
        for i in range(3)
    ]
    space = SearchSpace(BASE, 3)
    floor = fastest_answer(space, boards)
    deadline = floor.total_ms * 1.1
    ev = StrictEvaluator(boards, BASE, capacity_loss(BASE), delta=0.5, deadline_ms=deadline)
    assert sample_feasible(space, ev, np.random.default_rng(0), 5) == []
    assert debo(space, ev, initial=5, iterations=4, seed=0).history == []

    found = debo(space, ev, initial=5, iterations=4, seed=0, start=(floor.policy,))
    assert found.history[0].policy == floor.policy
    assert len({e.policy for e in found.history}) == len(found.history) == 1 + 4
    assert all(e.latency.total <= deadline for e in found.history)
    assert found.best.objective < found.history[0].objective  # the climb found a better policy
