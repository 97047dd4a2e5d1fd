"""Probes of a left-out worker are paced by what the plan expects of it (issue #33, item 3): its
predicted t1+t2 from the bundle, `probe_every` times that apart, capped so that a recovered
worker is back well within two deadlines; the measured median where a bundle has no prediction.
A hand-worked schedule, no processes: `Stragglers` is told the time."""

from __future__ import annotations

import pytest

from cofc.runtime.stragglers import MISSES_TO_LEAVE, PROBES_TO_RECOVER, Stragglers

DEADLINE_S = 0.5


def stragglers(expected: dict[str, float | None]) -> Stragglers:
    """Probes every 10 expected paces; the cap is 0.5 s / (2 x 3) = 83.3 ms."""
    s = Stragglers(expected, window=20, probe_every=10, limit_ms=500.0, deadline_s=DEADLINE_S, min_devices=1)
    for name in expected:
        s.join(name, name.encode())
    return s


def test_the_gap_is_probe_every_times_the_plans_prediction_capped_by_the_deadline():
    s = stragglers({"quick": 2.0, "slow": 20.0, "unplanned": None})
    assert s.gap_s("quick") == pytest.approx(0.020)  # 10 x 2 ms
    assert s.gap_s("slow") == pytest.approx(DEADLINE_S / (2 * PROBES_TO_RECOVER))  # 200 ms, capped at 83.3
    assert s.gap_s("unplanned") == pytest.approx(0.0833, abs=1e-4)  # nothing known yet: the cap
    connection = s.connection("unplanned")
    assert connection is not None
    for ms in (3.0, 4.0, 9.0):
        s.observe("unplanned", connection, ms)
    assert s.gap_s("unplanned") == pytest.approx(0.040)  # 10 x its measured median, 4 ms


def test_a_left_out_worker_is_probed_on_its_planned_pace_and_taken_back():
    """quick (2 ms planned) misses two deadlines and is left out. A request every millisecond:
    probed at t = 0, answering in 3 ms; the next probe is due 20 ms after the last was sent (not a
    deadline later), and the third good probe, sent at 40 ms, takes it back when it answers at 43."""
    s = stragglers({"quick": 2.0})
    connection = s.connection("quick")
    assert connection is not None
    for _ in range(MISSES_TO_LEAVE):
        s.observe("quick", connection, float("inf"))
    sent: list[int] = []
    answer: tuple[int, int] | None = None  # (the probe's request, the millisecond its feature arrives)
    back = None
    for ms in range(100):
        now = ms / 1000
        if answer is not None and ms >= answer[1]:
            assert s.probe_answered("quick", b"quick", answer[0], now)
            answer = None
        plan = s.plan(ms, {"quick"}, now)
        if not plan.excluded:
            back = ms
            break
        if "quick" in plan.probed:
            sent.append(ms)
            answer = (ms, ms + 3)
    assert sent == [0, 20, 40] and back == 43
