"""tools/message_costs.py over real CURVE sockets on loopback, and the tables' `runtime` section
as the planner reads it (old tables without one cost nothing)."""

from __future__ import annotations

import json

import pytest

from cofc.compiler.pipeline.context import runtime_cost
from cofc.compiler.planning.objective import RuntimeCost
from tests.helpers import REPO, load_tool

message_costs = load_tool("message_costs")


def test_a_round_trip_at_zero_compute_is_timed_and_a_smaller_share_waits_longer():
    full, relay = message_costs._round_trips(share=1.0, dim=32, tokens=2048, requests=40)
    tenth, _ = message_costs._round_trips(share=0.02, dim=32, tokens=2048, requests=40)
    assert 0 < relay < full  # central's own CPU is part of the round trip
    assert tenth > full  # unpacking 2,048 token ids paced to 2% of a core


@pytest.mark.parametrize("device", ["cpu-80", "cpu-50", "cpu-30"])
def test_the_flagship_tables_carry_their_measured_runtime_costs(device):
    table = json.loads((REPO / "profiles" / f"{device}.minilm-20ng.json").read_text())
    cost = runtime_cost(table)
    assert cost.message_ms > 0 and cost.relay_ms > 0 and cost.fuse_ms > 0
    assert table["runtime"]["cpu_share"] == table["provenance"]["cpu_share"]
    del table["runtime"]
    assert runtime_cost(table) == RuntimeCost()
