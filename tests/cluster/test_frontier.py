"""`cofc frontier`: CoFormer and its single compressed model at several latency budgets, built,
benched and tabled; resumable."""

from __future__ import annotations

import json

from cofc.compiler.cluster.frontier import FRONTIER, PLOT, Frontier, FrontierRow, budget_name
from cofc.compiler.cluster.gain import CollaborationGain
from cofc.compiler.pipeline.report import load_report
from tests.helpers import load_tool, run_cofc

results = load_tool("results")


def _frontier() -> Frontier:
    """Two budgets written by hand: a gain at equal medians, and a flagged one."""
    return Frontier(
        plan="minilm-20ng-quick",
        requests=500,
        emulated=True,
        teacher_accuracy=0.803,
        teacher_ms=31.4,
        rows=(
            FrontierRow(6.0, 5.1, 5.9, CollaborationGain(500, 0.712, 0.70, 0.803, 5.5, 5.6, 31.4, 5.709)),
            FrontierRow(9.0, 8.4, 8.8, CollaborationGain(500, 0.75, 0.74, 0.803, 9.0, 9.9, 31.4, 3.489)),
        ),
    )


def test_the_frontier_table_has_one_row_per_budget_and_flags_unequal_medians():
    assert results.frontier_table(_frontier()) == [
        "| budget (max_ms) | CoFormer predicted | CoFormer measured | CoFormer accuracy | speed-up | "
        "single predicted | single measured | single accuracy | gain |",
        "|---|---|---|---|---|---|---|---|---|",
        "| 6 ms | 5.100 ms | 5.500 ms | 71.20% | 5.71× | 5.900 ms | 5.600 ms | 70.00% | +1.20 pt |",
        "| 9 ms | 8.400 ms | 9.000 ms | 75.00% | 3.49× | 8.800 ms | 9.900 ms | 74.00% | "
        "+1.00 pt (medians 1.10× apart: not equal latency) |",
        "",
        "Teacher alone on the fastest device: 80.30% in 31.400 ms (median over the benches); 500 test inputs per "
        "bench, emulated.",
    ]


def test_a_frontier_reads_back_as_it_was_written(tmp_path):
    _frontier().save(tmp_path)
    assert Frontier.load(tmp_path) == _frontier()
    assert json.loads((tmp_path / FRONTIER).read_text())["rows"][1]["gain"]["single_ms"] == 9.9


def test_budgets_that_are_not_distinct_positive_milliseconds_are_refused(tmp_path):
    for bad in ("6,x", "6,-1", "6,6", ","):
        result = run_cofc("frontier", str(tmp_path / "plan.yaml"), "--budgets", bad)
        assert result.returncode == 2 and "--budgets" in result.stderr, (bad, result.stderr)


def test_frontier_builds_benches_and_resumes(built, tmp_path):
    budget = round(load_report(built).fused.predicted_ms * 1.5, 2)  # the small plan answers well within it
    args = ("frontier", str(built / "plan.yaml"), "--budgets", str(budget), "-n", "20", "-o", str(tmp_path))
    first = run_cofc(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    frontier = Frontier.load(tmp_path)
    (row,) = frontier.rows
    assert row.budget_ms == budget and row.coformer_predicted_ms <= budget
    assert (tmp_path / PLOT).stat().st_size > 0 and frontier.requests == 20 and not frontier.emulated
    coformer = tmp_path / budget_name(budget)
    assert load_report(coformer).fused.predicted_ms == row.coformer_predicted_ms

    again = run_cofc(*args)  # nothing to redo: every stage reused, the bench kept
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is current, kept" in again.stderr and "stage search ..." not in again.stderr
    assert Frontier.load(tmp_path).rows[0].gain.coformer_ms == row.gain.coformer_ms
