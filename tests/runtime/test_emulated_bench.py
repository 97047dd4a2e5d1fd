"""`cofc bench --emulate` (issue #17, item 2): each device runs in its own network namespace at
the CPU share its latency table was measured under, paced as `cofc profile --cpu-share` paces."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from cofc.compiler.cluster.bench_result import BenchResult
from cofc.compiler.pipeline.report import load_report
from tests.helpers import run_cofc

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")),
    reason="emulation needs root, ip and tc (network namespaces, cgroups)",
)


def _paced_copy(table, folder, share: float):
    """`table` (and its predictor) as if measured paced at `share` of a core."""
    for suffix in (".predictor.json", ".predictor.npz"):
        shutil.copy(table.with_name(table.stem + suffix), folder / (table.stem + suffix))
    data = json.loads(table.read_text())
    data["provenance"].update(cpu_share=share, cpu_period_us=None, cpu_emulation="paced")
    (folder / table.name).write_text(json.dumps(data))
    return folder / table.name


def _bench(build, *flags) -> BenchResult:
    result = run_cofc("bench", str(build), "-n", "40", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return BenchResult.load(build)


def test_emulated_bench_paces_each_device_to_its_tables_share(built, tmp_path):
    build = tmp_path / "out"
    shutil.copytree(built, build)
    plan = yaml.safe_load((build / "plan.yaml").read_text())
    nano = next(d for d in plan["devices"] if d["name"] == "nano")
    nano["profile"] = str(_paced_copy(Path(nano["profile"]), tmp_path, 0.25))
    (build / "plan.yaml").write_text(yaml.safe_dump(plan))

    loopback, emulated = _bench(build), _bench(build, "--emulate")
    assert not loopback.emulated and emulated.emulated, emulated.note
    phase = emulated.phases["nano"]
    assert (phase.cpu_share, phase.cpu_emulation) == (0.25, "paced")
    # The estimated tables record no share: those devices run at a full core, first in line.
    assert {(p.cpu_share, p.nice) for n, p in emulated.phases.items() if n != "nano"} == {(1.0, 0)}
    assert phase.nice > 0 and loopback.phases["nano"].nice is None
    # A quarter of a core: about 4x its loopback compute time.
    assert phase.t1_ms > 2.5 * loopback.phases["nano"].t1_ms, (phase, loopback.phases["nano"])
    assert emulated.accuracy == loopback.accuracy


def test_bench_times_the_teacher_at_the_clusters_precision(built, tmp_path):
    """The small plan is INT8: the teacher is timed at the precision the build chose for it by
    the devices' rule, and at FP32 beside it when that is INT8, so the speed-up is like for like."""
    build = tmp_path / "out"
    shutil.copytree(built, build)
    chosen = load_report(build).precision.of("teacher").precision
    result = run_cofc("bench", str(build), "-n", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    teacher = BenchResult.load(build).teacher
    assert teacher.precision == chosen and teacher.median_ms > 0
    assert (teacher.fp32_ms is not None) == (chosen == "int8")
    assert f"teacher alone on {teacher.device} ({chosen.upper()})" in result.stdout
