"""tools/tradeoff.py: which variants of a plan it builds, and what each one changes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cofc.compiler.plan import load_plan
from tests.helpers import load_tool, make_plan

tradeoff = load_tool("tradeoff")
Variant = tradeoff.Variant


def test_variants_are_the_plan_then_one_axis_value_at_a_time():
    axes = [tradeoff.parse_vary("devices=2,3"), tradeoff.parse_vary("delta=0.5")]
    assert tradeoff.variants(axes) == [
        Variant(None, None),
        Variant("devices", "2"),
        Variant("devices", "3"),
        Variant("delta", "0.5"),
    ]
    assert [v.name for v in tradeoff.variants(axes)] == ["plan", "devices-2", "devices-3", "delta-0.5"]
    assert [v.name for v in tradeoff.variants(axes, with_plan=False)] == ["devices-2", "devices-3", "delta-0.5"]


@pytest.mark.parametrize("text", ["depth=2", "devices", "devices="])
def test_unknown_axis_or_no_values_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="AXIS=V1,V2"):
        tradeoff.parse_vary(text)


def test_each_variant_changes_its_one_setting(tmp_path):
    plan = load_plan(make_plan(tmp_path))  # orin (central), tx2, nano; links 2, 2, 1 Mb/s; δ 0.1
    out = Path("/builds/x")

    two = tradeoff.apply(plan, Variant("devices", "2"), out)
    assert [d.name for d in two.devices] == ["orin", "tx2"] and two.output == out
    assert two.name == "small-vit-devices-2" and two.objective == plan.objective
    assert [d.name for d in tradeoff.apply(plan, Variant("devices", "1"), out).devices] == ["orin"]
    five = tradeoff.apply(plan, Variant("devices", "5"), out)
    assert [d.name for d in five.devices] == ["orin", "tx2", "nano", "nano-2", "nano-3"]
    assert five.devices[3].profile == five.devices[4].profile == plan.devices[2].profile
    assert five.devices[3].link_mbps == plan.devices[2].link_mbps and not five.devices[4].central
    with pytest.raises(ValueError, match="devices=0"):
        tradeoff.apply(plan, Variant("devices", "0"), out)

    slow = tradeoff.apply(plan, Variant("link_mbps", "0.5"), out)
    assert [d.link_mbps for d in slow.devices] == [0.5, 0.5, 0.5]
    assert [d.name for d in slow.devices] == [d.name for d in plan.devices]

    assert tradeoff.apply(plan, Variant("delta", "0.5"), out).objective.delta == 0.5
    uniform = tradeoff.apply(plan, Variant("ship", "uniform"), out)
    assert uniform.objective.ship == "uniform" and uniform.objective.delta == plan.objective.delta
    same = tradeoff.apply(plan, Variant(None, None), out)
    assert same.devices == plan.devices and same.objective == plan.objective and same.name == "small-vit-plan"


def test_a_rerun_replaces_its_variants_rows_and_keeps_the_others():
    kept = [{"variant": "plan", "speedup": 1.0}, {"variant": "ship-uniform", "speedup": 2.0}]
    again = tradeoff.merged(kept, {"variant": "plan", "speedup": 3.0})
    assert again == [{"variant": "plan", "speedup": 3.0}, {"variant": "ship-uniform", "speedup": 2.0}]
    grown = tradeoff.merged(again, {"variant": "devices-2", "speedup": 4.0})
    assert [r["variant"] for r in grown] == ["plan", "ship-uniform", "devices-2"]
