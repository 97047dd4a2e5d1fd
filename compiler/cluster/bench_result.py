"""What `cofc bench` measured, typed, as OUT/bench.json holds it: each device's phases against the
plan's prediction, end to end against the teacher alone, and the accuracy of the answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cofc.runtime._files import atomic_write_json
from cofc.runtime._typed_json import from_json, to_json

BENCH = "bench.json"


@dataclass(frozen=True)
class Spread:
    """Median and 90th percentile over the requests, ms."""

    median: float
    p90: float


@dataclass(frozen=True)
class Phase:
    """One device's median compute (t1) and transfer (t2) against its table's prediction, and the
    emulation it ran under (`CpuLimit.provenance`)."""

    t1_ms: float
    t2_ms: float
    predicted_t1_ms: float
    predicted_t2_ms: float
    cpu_share: float
    cpu_period_us: int | None  # None: paced, not a cgroup quota
    cpu_emulation: Literal["paced", "cgroup"]
    nice: int | None  # its scheduling priority under emulation; None: not emulated
    link_mbps: float | None  # None: the central device, which sends nothing

    @property
    def t1_over_predicted(self) -> float:
        return self.t1_ms / self.predicted_t1_ms


@dataclass(frozen=True)
class TeacherTiming:
    """The teacher alone on the plan's fastest device, through the same backend, at the precision
    the build chose for it by the rule each device's graph follows (compiler/export/precision.py),
    so that an INT8 cluster is set against an INT8 teacher where INT8 pays for the teacher."""

    device: str
    median_ms: float
    accuracy: float  # from the build's report, for the comparison beside CoFormer's
    precision: str  # of the graph timed: fp32 or int8
    fp32_ms: float | None  # the FP32 teacher's median too, when `precision` is not fp32


@dataclass(frozen=True)
class StreamRate:
    """A pipelined stream of the same inputs (`cofc bench --stream`), against the rate that the
    slowest stage allows: each device's t1+t2 and the fusion t3 overlap across requests."""

    window: int
    answers: int
    errors: int
    degraded: int
    seconds: float
    answers_per_s: float
    slowest_stage: str
    slowest_stage_ms: float
    bound_per_s: float
    ratio: float  # answers_per_s / bound_per_s


@dataclass(frozen=True)
class BenchResult:
    requests: int
    emulated: bool  # False where emulation was asked for but refused: `note` says why
    note: str | None
    accuracy: float
    degraded: int
    end_to_end_ms: Spread
    client_ms: Spread  # as the client saw it, socket hops included
    phases: dict[str, Phase]  # by device, in the plan's order
    t3_ms: float
    critical_path_ms: float  # median of max_n(t1_n + t2_n) + t3, per request
    overhead_ms: Spread  # end to end less the critical path, per request
    overhead_ratio: float  # median of end to end / critical path
    predicted_ms: float  # T of eq. 3 from the plan's tables
    teacher: TeacherTiming
    speedup_vs_teacher: float  # teacher.median_ms / end_to_end_ms.median, one run
    stream: StreamRate | None = None

    def save(self, build_dir: Path) -> None:
        atomic_write_json(Path(build_dir) / BENCH, to_json(self))

    @classmethod
    def load(cls, build_dir: Path) -> BenchResult:
        return from_json(cls, _upgraded(json.loads((Path(build_dir) / BENCH).read_text())))


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A bench.json of an earlier version as this one writes it. Before paced emulation
    (docs/reports/vit) a file had neither `cpu_emulation` nor `nice`: every emulated device ran
    under a cgroup quota and none was niced. Before `stream` was always written, a run without
    one left it out. Before INT8 graphs the teacher was always timed at FP32."""
    phases = {name: {"cpu_emulation": "cgroup", "nice": None} | p for name, p in data.get("phases", {}).items()}
    teacher = {"precision": "fp32", "fp32_ms": None} | data.get("teacher", {})
    return {"stream": None} | data | {"phases": phases, "teacher": teacher}
