"""The collaboration gain (issue #32): what CoFormer buys over the obvious alternative, one
compressed sub-model of the same teacher on the plan's fastest device, at the same measured
latency. Both sides come from `cofc bench` on the same test inputs; the gain is only a fair
comparison when their measured medians agree, so it says when they do not. Pure arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cofc.compiler.cluster.bench_result import BENCH, BenchResult
from cofc.errors import CofcError

EQUAL_LATENCY = 0.05  # the medians may differ by this fraction and still count as equal
SINGLE_SUFFIX = "-single"  # OUT-single: the baseline build beside OUT


@dataclass(frozen=True)
class CollaborationGain:
    requests: int  # the test inputs both benches answered (the same seeded sample)
    coformer_accuracy: float
    single_accuracy: float
    teacher_accuracy: float
    coformer_ms: float  # measured end-to-end medians
    single_ms: float
    teacher_ms: float  # the teacher alone on the fastest device, CoFormer's bench run
    speedup_vs_teacher: float  # CoFormer's, from its own bench run

    @property
    def points(self) -> float:
        """CoFormer − single, in accuracy points (100 × the fraction)."""
        return 100 * (self.coformer_accuracy - self.single_accuracy)

    @property
    def ms_ratio(self) -> float:
        """The single model's measured median over CoFormer's."""
        return self.single_ms / self.coformer_ms

    @property
    def equal_latency(self) -> bool:
        """Whether the two medians are within `EQUAL_LATENCY` of each other, so the gain is fair."""
        return abs(self.ms_ratio - 1.0) <= EQUAL_LATENCY

    def __str__(self) -> str:
        text = (
            f"collaboration gain {self.points:+.2f} pt: CoFormer {100 * self.coformer_accuracy:.2f}% in "
            f"{self.coformer_ms:.3f} ms ({self.speedup_vs_teacher:.2f}x the teacher), single compressed model "
            f"{100 * self.single_accuracy:.2f}% in {self.single_ms:.3f} ms ({self.ms_ratio:.2f}x CoFormer's "
            f"median), teacher {100 * self.teacher_accuracy:.2f}%"
        )
        if not self.equal_latency:
            text += f"; NOT at equal latency: the medians differ by more than {EQUAL_LATENCY:.0%}"
        return text


def collaboration_gain(coformer: BenchResult, single: BenchResult) -> CollaborationGain:
    """The gain of one CoFormer bench over its single model's; both must have answered the same
    inputs, under the same emulation, or the accuracies are not comparable."""
    if coformer.requests != single.requests or coformer.emulated != single.emulated:
        raise CofcError(
            f"the CoFormer bench ({coformer.requests} requests, {_mode(coformer)}) and the single model's "
            f"({single.requests}, {_mode(single)}) are not comparable: bench both alike"
        )
    return CollaborationGain(
        requests=coformer.requests,
        coformer_accuracy=coformer.accuracy,
        single_accuracy=single.accuracy,
        teacher_accuracy=coformer.teacher.accuracy,
        coformer_ms=coformer.end_to_end_ms.median,
        single_ms=single.end_to_end_ms.median,
        teacher_ms=coformer.teacher.median_ms,
        speedup_vs_teacher=coformer.speedup_vs_teacher,
    )


def _mode(b: BenchResult) -> str:
    return "emulated" if b.emulated else "unshaped"


def single_dir(build_dir: Path) -> Path:
    """Where `cofc baseline` puts a build's single model: OUT-single, beside OUT."""
    build_dir = Path(build_dir).resolve()
    return build_dir.with_name(build_dir.name + SINGLE_SUFFIX)


def gain_beside(build_dir: Path, single: Path | None = None) -> CollaborationGain | None:
    """The gain of a benched build over its benched single model (`single`, or OUT-single), or
    None when either has no bench.json."""
    single = single_dir(build_dir) if single is None else Path(single)
    if not (Path(build_dir) / BENCH).is_file() or not (single / BENCH).is_file():
        return None
    return collaboration_gain(BenchResult.load(build_dir), BenchResult.load(single))
