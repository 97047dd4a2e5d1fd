"""Evaluator: eq. 3–6 on a hand-worked example, each of C1–C6 caught by name, and the deadline."""

from __future__ import annotations

import numpy as np
import pytest

from cofc.compiler.planning.objective import (
    DeviceModel,
    Evaluator,
    RuntimeCost,
    latency,
    total_latency,
    violations,
)
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops, memory_bytes

BASE = TransformerSpec(layers=4, dim=64, heads=4, mlp=128, head_dim=16, tokens=17, classes=10)
A = SubModelSpec(2, 32, (2, 2), (64, 64))
B = SubModelSpec(4, 32, (2, 2, 2, 2), (64, 64, 64, 64))


def device(name, ms, link, central=False, max_flops=1e12, memory=1e12, g=1e6):
    return DeviceModel(name, lambda s: ms, link, max_flops, memory, g, central)


def test_latency_matches_equations_3_to_6_by_hand():
    devices = [device("a", 5.0, 10.0, central=True, g=2e6), device("b", 8.0, 2.0)]
    lat = latency((A, B), devices, BASE)
    # t1 from the predictors; t2: b sends 32 float32 = 128 bytes = 1024 bits over 2 Mb/s
    # = 0.512 ms, a is central and sends nothing; t3: (2·64·64 + 2·64·10) FLOPs at 2e6 FLOPs/ms.
    assert lat.t1 == (5.0, 8.0)
    assert lat.t2 == pytest.approx((0.0, 0.512))
    assert lat.t3 == pytest.approx((8192 + 1280) / 2e6)
    assert lat.total == pytest.approx(8.512 + 0.004736)
    # A 784-byte raw input forwarded to b crosses the same link: (784 + 128)·8 bits / 2 Mb/s.
    assert latency((A, B), devices, BASE, input_bytes=784).t2[1] == pytest.approx(3.648)


def test_the_runtimes_measured_costs_join_t2_and_t3_by_hand():
    """Central sends and reads two workers' messages (its t2) and fuses at a fixed cost (t3); a
    worker adds its message path to eq. 5; one that finishes before central waits for it."""
    central = DeviceModel(
        "a", lambda s: 5.0, 10.0, 1e12, 1e12, 2e6, True, runtime=RuntimeCost(relay_ms=0.1, fuse_ms=0.2)
    )
    slow = DeviceModel("b", lambda s: 8.0, 2.0, 1e12, 1e12, 1e6, runtime=RuntimeCost(message_ms=0.4, byte_ms=0.001))
    quick = DeviceModel("c", lambda s: 1.0, 100.0, 1e12, 1e12, 1e6, runtime=RuntimeCost(message_ms=0.4, byte_ms=0.001))
    small = SubModelSpec(1, 16, (1,), (8,))
    lat = latency((A, B, small), [central, slow, quick], BASE, input_bytes=784)
    # b: (784 + 32·4) bytes · 8 / 2 Mb/s = 3.648 ms, + 0.4 + 0.001·784; c's own path: 848 bytes over
    # 100 Mb/s = 0.06784 ms + 1.184 = 1.25184 ms, but central reads it at 5.0 + 2·0.1 = 5.2 ms.
    assert lat.t2 == pytest.approx((0.2, 3.648 + 1.184, 5.2 - 1.0))
    # t3: (2·80·64 + 2·64·10) FLOPs at 2e6 FLOPs/ms, then the aggregator call's 0.2 ms.
    assert lat.t3 == pytest.approx(11520 / 2e6 + 0.2)
    assert lat.total == pytest.approx(8.0 + 4.832 + 0.20576)
    assert total_latency([(A, B, small)], [central, slow, quick], BASE, input_bytes=784) == pytest.approx([lat.total])


def test_objective_is_loss_plus_delta_latency():
    devices = [device("a", 5.0, 10.0, central=True), device("b", 8.0, 2.0)]
    ev = Evaluator(devices, BASE, val_loss=lambda policy: 0.75, delta=0.1)
    result = ev((A, B))
    assert result.objective == pytest.approx(0.75 + 0.1 * result.latency.total)
    assert ev.calls == 1


def _one(field: str, policy, **budget):
    devices = [device("a", 1, 1, central=True, **budget), device("b", 1, 1, **budget)]
    found = violations(policy, devices, BASE)
    assert found and all(f.startswith(field) for f in found), found
    return found


def test_each_constraint_is_caught():
    _one("C1", (SubModelSpec(5, 16, (1,) * 5, (8,) * 5), SubModelSpec(1, 16, (1,), (8,))))
    _one("C2", (SubModelSpec(1, 48, (1,), (8,)), SubModelSpec(1, 32, (1,), (8,))))
    _one("C3", (SubModelSpec(2, 16, (1, 3), (8, 8)), SubModelSpec(2, 16, (1, 2), (8, 8))))
    c4 = _one("C4", (SubModelSpec(2, 16, (1, 1), (100, 8)), SubModelSpec(1, 16, (1,), (29,))))
    assert "layer 1" in c4[0]
    _one("C5", (A, SubModelSpec(1, 16, (1,), (8,))), max_flops=flops(A, BASE) - 1)
    _one("C6", (A, SubModelSpec(1, 16, (1,), (8,))), memory=memory_bytes(A, BASE) - 1)


def test_feasible_policy_has_no_violations_and_infeasible_never_evaluates():
    devices = [device("a", 1, 1, central=True), device("b", 1, 1)]
    assert violations((A, B), devices, BASE) == []
    ev = Evaluator(devices, BASE, val_loss=lambda p: 0.0, delta=1.0)
    with pytest.raises(ValueError, match="C2"):
        ev((SubModelSpec(1, 64, (1,), (8,)), B))
    assert ev.calls == 0


def test_a_deadline_refuses_policies_predicted_past_it_by_name():
    # T of (A, B) on these devices is 8.512 ms + t3 (test above): a deadline of 8.5 ms refuses it,
    # one of 8.6 ms admits it; the array screen agrees with the one-policy check.
    devices = [device("a", 5.0, 10.0, central=True, g=2e6), device("b", 8.0, 2.0)]
    tight = Evaluator(devices, BASE, val_loss=lambda p: 0.0, delta=1.0, deadline_ms=8.5)
    loose = Evaluator(devices, BASE, val_loss=lambda p: 0.0, delta=1.0, deadline_ms=8.6)
    assert tight.violations((A, B)) == ["deadline: T = 8.52 ms > 8.5 ms"]
    assert loose.violations((A, B)) == [] and loose((A, B)).latency.total < 8.6
    with pytest.raises(ValueError, match="deadline"):
        tight((A, B))
    assert tight.calls == 0
    columns = [np.array([[2, 2]]), np.array([[32, 32]]), np.array([[2, 2]]), np.array([[64, 64]])]  # (A, A)
    assert tight.feasible_uniform(*columns).tolist() == [False]
    assert loose.feasible_uniform(*columns).tolist() == [True]


def test_total_latency_of_many_policies_is_each_ones_eq_3():
    """The batched T (the deadline screen's) against `latency` one policy at a time: t1 from a
    batch predictor on one device and spec by spec on the other, t2 and t3 from the widths."""
    t1 = lambda s: 0.5 + s.dim / 16 + sum(s.heads) / 3  # noqa: E731
    central = DeviceModel("a", t1, 10.0, 1e12, 1e12, 2e6, True, lambda specs: np.array([t1(s) for s in specs]))
    devices = [central, device("b", 3.0, 2.0)]
    policies = [(A, B), (B, A), (SubModelSpec(1, 16, (1,), (8,)), SubModelSpec(3, 48, (3,) * 3, (100,) * 3))]
    want = [latency(p, devices, BASE, input_bytes=784).total for p in policies]
    assert total_latency(policies, devices, BASE, input_bytes=784) == pytest.approx(want, rel=1e-12)
    assert len(set(want)) > 1
