"""tools/compare_calibration.py: which calibrations it reruns on a built plan, and a rerun at
another epoch count on the session's small build."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from cofc.compiler.plan import load_plan
from tests.helpers import REPO, load_tool

compare = load_tool("compare_calibration")
TOOL = REPO / "tools" / "compare_calibration.py"


def test_each_setting_flips_alone_then_seeds_then_epoch_counts():
    planned = load_plan(REPO / "examples" / "minilm_20ng.yaml").calibration  # 2 epochs, layer_distill 3.0
    runs = compare.runs(planned, 0, ["layer_distill", "reading"], seeds=[1], epochs=[5, 10])
    assert [(r.seed, r.calibration) for r in runs] == [
        (0, dataclasses.replace(planned, layer_distill=0.0)),  # the plan sets it: back to the default
        (0, dataclasses.replace(planned, reading="printed")),  # the plan keeps the default: to VARIANTS'
        (1, planned),
        (0, dataclasses.replace(planned, epochs=5)),
        (0, dataclasses.replace(planned, epochs=10)),
    ]
    own = compare.name_of(planned)
    assert [r.name for r in runs[2:]] == [f"{own} seed=1", f"{own} epochs=5", f"{own} epochs=10"]
    assert "layer_distill=0.0" in runs[0].name and len({r.name for r in runs}) == len(runs)


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_a_rerun_at_another_epoch_count_joins_the_builds_own_result(built, tmp_path):
    plan, out = built.parent / "plan.yaml", tmp_path / "compare.json"
    result = _tool(
        str(plan), "--build", str(built), "--variants", "", "--epochs", "1", "--device", "cpu", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(out.read_text())
    own = compare.name_of(load_plan(plan).calibration)
    assert sorted(written["results"]) == [f"{own} (the build)", f"{own} epochs=1"]
    rerun = written["results"][f"{own} epochs=1"]
    assert rerun["samples"] == 300 and len(rerun["submodels"]) == 3 and rerun["calibration_seconds"] > 0
    assert rerun["torch_device"] == "cpu"


@pytest.mark.parametrize(
    "args, message",
    [(["--epochs", "0"], "--epochs must be at least 1"), (["--seeds", "one"], "--seeds must be integers")],
)
def test_bad_counts_are_one_line(args, message, tmp_path):
    result = _tool(str(tmp_path / "plan.yaml"), "--build", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA device here")
def test_cuda_asked_for_where_there_is_none_is_one_line(tmp_path):
    result = _tool(str(tmp_path / "plan.yaml"), "--build", str(tmp_path), "--device", "cuda")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--device cuda: no CUDA device is visible to torch here" in result.stderr
