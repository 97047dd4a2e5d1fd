"""CPU limits that emulate slower devices: a table's limit is read back as it was measured (paced,
or a cgroup quota and its period), and a short period slows a single long request after idle,
where the kernel's 100 ms default does not."""

from __future__ import annotations

import os
import time

import pytest

from cofc.errors import CofcError
from cofc.runtime.cgroup import LEGACY_PERIOD_US, CpuLimit, cpu_quota, held_to


def test_table_limit_is_read_as_measured():
    assert CpuLimit.of_table({"cpu_share": None}) is None
    assert CpuLimit.of_table({"cpu_share": 0.3, "cpu_period_us": None, "cpu_emulation": "paced"}) == CpuLimit(0.3)
    assert CpuLimit(0.3).paced and not CpuLimit(0.3, 10_000).paced
    assert CpuLimit(0.3).pace == 0.3 and CpuLimit(0.3, 10_000).pace is None
    assert CpuLimit.of_table({"cpu_share": 0.5, "cpu_period_us": 10_000}) == CpuLimit(0.5, 10_000)
    # Tables measured before periods were recorded ran under the kernel default.
    assert CpuLimit.of_table({"cpu_share": 0.35}) == CpuLimit(0.35, LEGACY_PERIOD_US)
    for limit in (CpuLimit(0.3), CpuLimit(0.5, 10_000)):
        assert CpuLimit.of_table(limit.provenance()) == limit
    assert CpuLimit.of_table(CpuLimit.UNLIMITED) is None


def test_paced_limit_has_no_cgroup():
    with pytest.raises(CofcError, match="paced"):
        with cpu_quota(CpuLimit(0.5)):
            pass
    for nothing_to_hold in (None, CpuLimit(0.5)):
        with held_to(nothing_to_hold) as held:
            assert held is None  # no group was made: pacing is the backend's


@pytest.mark.parametrize("share, period", [(0, 10_000), (0.5, 10), (0.5, 5_000_000), (1.5, None)])
def test_impossible_limit_is_refused(share, period):
    with pytest.raises(CofcError, match="cpu"):
        CpuLimit(share, period)


def _burst_ms(work_s: float) -> float:
    """Wall time of `work_s` of busy CPU work, started after idle."""
    time.sleep(0.3)  # idle: a fresh period's quota is available
    start = time.perf_counter()
    cpu_start = time.process_time()
    while time.process_time() - cpu_start < work_s:
        pass
    return (time.perf_counter() - start) * 1e3


def _limited_ms(limit: CpuLimit) -> float:
    try:
        with held_to(limit):
            return min(_burst_ms(0.02) for _ in range(3))
    except CofcError as exc:
        pytest.skip(f"this machine cannot cap CPU: {exc}")


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
def test_short_period_slows_a_single_request_like_sustained_load():
    # 20 ms of work at 0.3 of a core: ~67 ms under a 10 ms period; under 100 ms its 30 ms quota
    # covers the whole burst, so it runs at full speed.
    short, legacy = _limited_ms(CpuLimit(0.3, 10_000)), _limited_ms(CpuLimit(0.3, LEGACY_PERIOD_US))
    assert short > 2.0 * 20, short
    assert legacy < 1.5 * 20, legacy
