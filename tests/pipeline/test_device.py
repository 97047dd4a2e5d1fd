"""`cofc build --device auto|cpu|cuda`: where the build's torch work runs, what its report says,
that a stage is not reused across kinds of device, and, where a GPU is present, that a small
plan's accuracies on CUDA agree with the CPU's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from cofc.compiler.models.torch_device import resolve
from cofc.compiler.pipeline.report import REPORT, load_report
from tests.helpers import REPO, make_plan, run_cofc

CUDA = torch.cuda.is_available()
STAGES = {"teacher", "importance", "search", "calibrate", "export", "quantize", "bundle", "evaluate"}


@pytest.mark.skipif(CUDA, reason="torch sees a CUDA device here: auto picks it")
def test_auto_is_the_cpu_where_torch_sees_no_cuda():
    assert resolve("auto") == resolve("cpu") == torch.device("cpu")


@pytest.mark.skipif(CUDA, reason="torch sees a CUDA device here")
def test_cuda_asked_for_where_there_is_none_is_one_line(tmp_path):
    """Refused before the plan is read: the plan here does not even exist."""
    result = run_cofc("build", str(tmp_path / "plan.yaml"), "--device", "cuda")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "cofc: error: --device cuda: no CUDA device is visible to torch here"
    assert not (tmp_path / "out").exists()


def test_reports_from_before_the_choice_load_as_cpu_builds(tmp_path):
    """Every report written before the report said where torch ran was built on a CPU."""
    for committed in sorted((REPO / "docs" / "reports").glob(f"*/{REPORT}")):
        data = json.loads(committed.read_text())
        data.pop("torch_device", None)
        (tmp_path / REPORT).write_text(json.dumps(data))
        assert load_report(tmp_path).torch_device == "cpu", committed


def _rebuild(folder: Path, *args: str) -> tuple[set[str], set[str]]:
    """Build again; which stages were reused and which ran."""
    result = run_cofc("build", "plan.yaml", *args, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    reused = set(re.findall(r"stage (\w+): unchanged", result.stderr))
    return reused, set(re.findall(r"stage (\w+) \.\.\.", result.stderr))


def test_a_cpu_build_says_so_and_shares_no_stage_with_a_cuda_one(built, tmp_path):
    """The session's build ran with --device auto. Built again with --device cpu, it reuses every
    stage where auto was the CPU, and reruns every one where auto was CUDA; either way the report
    names the CPU."""
    assert load_report(built).torch_device == ("cpu" if not CUDA else f"cuda ({torch.cuda.get_device_name()})")
    folder = tmp_path / "plan"
    shutil.copytree(built.parent, folder)
    reused, ran = _rebuild(folder, "--device", "cpu")
    assert (reused, ran) == ((set(), STAGES) if CUDA else (STAGES, set()))
    assert load_report(folder / "out").torch_device == "cpu"
    assert "torch on cpu" in (folder / "out" / "report.md").read_text()


@pytest.mark.e2e
@pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device here: comparing CPU and CUDA builds needs a GPU")
def test_a_small_plan_on_cuda_agrees_with_the_cpu_within_a_third_of_a_point(tmp_path):
    """The small plan on the whole MNIST-5k test split (1,000 images, so 0.3 points is 3 of them),
    built on each device: the same decomposition, and every accuracy within 0.3 points."""
    plan = make_plan(tmp_path)
    plan.write_text(plan.read_text().replace("test: 300", "test: 1000"))
    reports = {}
    for device in ("cpu", "cuda"):
        result = run_cofc("build", str(plan), "--device", device, "-o", str(tmp_path / device))
        assert result.returncode == 0, result.stderr[-3000:]
        reports[device] = load_report(tmp_path / device)
    cpu, cuda = reports["cpu"], reports["cuda"]
    assert cpu.torch_device == "cpu" and cuda.torch_device.startswith("cuda (")
    assert [d.spec for d in cpu.devices] == [d.spec for d in cuda.devices]

    def accuracies(r) -> dict[str, float]:
        return {
            "teacher": r.teacher.accuracy,
            "fused": r.fused.accuracy,
            "fused, torch": r.fused.accuracy_torch,
            "average": r.average,
            "vote": r.vote,
            **{f"{d.name} alone": d.accuracy for d in r.devices},
            **{f"{name} missing": a for name, a in r.fused.missing_one.items()},
        }

    gaps = {k: abs(v - accuracies(cuda)[k]) for k, v in accuracies(cpu).items()}
    assert max(gaps.values()) <= 0.003, gaps
    seconds = {d: sum(r.stage_seconds.values()) for d, r in reports.items()}
    print(f"stage time: cpu {seconds['cpu']:.1f} s, {cuda.torch_device} {seconds['cuda']:.1f} s")
