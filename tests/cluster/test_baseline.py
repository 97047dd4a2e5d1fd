"""`cofc baseline`: the single compressed model on the plan's fastest device, within CoFormer's
measured time, and the collaboration gain it gives."""

from __future__ import annotations

import shutil

import pytest

from cofc.compiler.cluster.baseline import baseline_plan, retimed_deadline
from cofc.compiler.cluster.bench_result import BenchResult, Spread, TeacherTiming
from cofc.compiler.cluster.gain import CollaborationGain, collaboration_gain, single_dir
from cofc.compiler.pipeline.report import gain_markdown
from cofc.compiler.plan import load_plan
from cofc.errors import CofcError
from tests.helpers import REPO, run_cofc


def test_the_baseline_plan_is_the_fastest_device_alone_with_a_deadline(tmp_path):
    plan = load_plan(REPO / "examples" / "minilm_20ng.yaml")
    single = baseline_plan(plan, 6.876, tmp_path)
    fast = next(d for d in plan.devices if d.name == "fast")  # the 0.8-core device of the three
    assert [d.name for d in single.devices] == ["fast"] and single.devices[0].central
    assert single.devices[0].max_mflops == fast.max_mflops  # the device's own cap, no FLOPs guess
    assert single.objective.max_ms == 6.88 and single.objective.delta < 1e-3
    assert (single.calibration, single.dataset, single.teacher) == (plan.calibration, plan.dataset, plan.teacher)
    assert single.output == tmp_path and single.name == f"{plan.name}-single"


def test_a_single_model_within_five_percent_of_coformer_is_kept():
    assert retimed_deadline(6.15, target_ms=6.15, measured_ms=6.28) is None  # 2% slower
    assert retimed_deadline(6.15, target_ms=6.15, measured_ms=5.90) is None  # 4% faster


def test_a_single_model_that_measured_slow_or_fast_is_rebuilt_with_the_deadline_scaled():
    # the stronger teacher's case: predicted within 6.88 ms, measured 8.68 ms against CoFormer's 6.88 ms
    assert retimed_deadline(6.88, target_ms=6.88, measured_ms=8.68) == 5.45  # 6.88 · 6.88 / 8.68
    assert retimed_deadline(5.0, target_ms=6.0, measured_ms=5.0) == 6.0  # too fast: more time


def _bench(accuracy: float, median_ms: float, requests: int = 7528, emulated: bool = True) -> BenchResult:
    """A bench.json's numbers as `cofc bench` writes them, the ones the gain reads set by hand."""
    return BenchResult(
        requests=requests,
        emulated=emulated,
        note=None,
        accuracy=accuracy,
        degraded=0,
        end_to_end_ms=Spread(median_ms, median_ms * 1.1),
        client_ms=Spread(median_ms + 0.3, median_ms + 0.5),
        phases={},
        t3_ms=0.05,
        critical_path_ms=median_ms - 0.5,
        overhead_ms=Spread(0.5, 0.7),
        overhead_ratio=1.1,
        predicted_ms=median_ms - 1.0,
        teacher=TeacherTiming("fast", 32.486, 0.8134, "fp32", None),
        speedup_vs_teacher=32.486 / median_ms,
    )


def test_the_gain_is_coformer_less_single_at_their_measured_medians():
    # the flagship's committed pair (docs/reports/minilm-20ng and -single)
    gain = collaboration_gain(_bench(0.8148, 6.15), _bench(0.8134, 6.283))
    assert gain == CollaborationGain(7528, 0.8148, 0.8134, 0.8134, 6.15, 6.283, 32.486, 32.486 / 6.15)
    assert gain.points == pytest.approx(0.14) and gain.ms_ratio == pytest.approx(1.021626, abs=1e-6)
    assert gain.equal_latency
    assert str(gain) == (
        "collaboration gain +0.14 pt: CoFormer 81.48% in 6.150 ms (5.28x the teacher), single compressed "
        "model 81.34% in 6.283 ms (1.02x CoFormer's median), teacher 81.34%"
    )


def test_a_gain_at_medians_more_than_five_percent_apart_is_flagged():
    gain = collaboration_gain(_bench(0.8199, 6.88), _bench(0.8308, 7.41))  # the stronger teacher's first try
    assert gain.points == pytest.approx(-1.09) and not gain.equal_latency
    assert str(gain).endswith(
        "(1.08x CoFormer's median), teacher 81.34%; NOT at equal latency: the medians differ by more than 5%"
    )
    assert gain_markdown(gain)[-1] == "The medians differ by more than 5%: this is not a comparison at equal latency."
    assert collaboration_gain(_bench(0.8199, 6.88), _bench(0.8308, 6.55)).equal_latency  # 4.8% faster


def test_the_gain_section_of_the_report():
    assert gain_markdown(collaboration_gain(_bench(0.8148, 6.15), _bench(0.8134, 6.283))) == [
        "## Collaboration gain (measured: `cofc bench`, `cofc baseline`)",
        "",
        "On the same 7528 test inputs, CoFormer against one compressed sub-model of the same teacher on the "
        "fastest device alone, sized to CoFormer's measured median.",
        "",
        "| | accuracy | end to end, median |",
        "|---|---|---|",
        "| CoFormer | 81.48% | 6.150 ms |",
        "| single compressed model | 81.34% | 6.283 ms (1.02× CoFormer's) |",
        "| teacher alone | 81.34% | 32.486 ms |",
        "",
        "Collaboration gain: **+0.14 points** at 5.28× the teacher's speed.",
    ]


def test_benches_of_other_inputs_or_emulation_are_not_compared():
    with pytest.raises(CofcError, match="not comparable"):
        collaboration_gain(_bench(0.8, 6.0, requests=500), _bench(0.8, 6.0, requests=7528))
    with pytest.raises(CofcError, match="not comparable"):
        collaboration_gain(_bench(0.8, 6.0), _bench(0.8, 6.0, emulated=False))


def test_baseline_builds_benches_and_reports_the_gain(built, tmp_path):
    build = tmp_path / "out"
    shutil.copytree(built, build)
    result = run_cofc("baseline", str(build))
    assert result.returncode == 1 and "run 'cofc bench" in result.stderr  # CoFormer must be measured first
    assert run_cofc("bench", str(build), "-n", "20").returncode == 0

    result = run_cofc("baseline", str(build))
    assert result.returncode == 0, result.stderr[-3000:]
    single = BenchResult.load(single_dir(build))
    gain = collaboration_gain(BenchResult.load(build), single)
    assert single.requests == 20 and single.phases.keys() == {"orin"}  # the fastest device alone
    assert result.stdout.strip().splitlines()[-1] == str(gain)
    assert "## Collaboration gain" in (build / "report.md").read_text()
    # the single model's build took CoFormer's importance ranking as it was, not computed again
    importance = "stages/importance.json"
    assert (single_dir(build) / importance).read_bytes() == (build / importance).read_bytes()

    if gain.equal_latency:  # nothing to redo: benched after CoFormer, alike, within 5%
        again = run_cofc("baseline", str(build))
        assert again.returncode == 0 and "benched already" in again.stderr, again.stderr[-3000:]
        assert again.stdout.strip().splitlines()[-1] == str(gain)

    bench = run_cofc("bench", str(build), "-n", "20")
    assert bench.returncode == 0 and bench.stdout.strip().splitlines()[-1].startswith("collaboration gain")
