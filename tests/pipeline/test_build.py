"""`cofc build` end to end on a small plan: the report, resuming after kill -9, and a deadline no
policy meets."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cofc.compiler.pipeline.report import load_report
from cofc.compiler.plan import load_plan
from tests.helpers import make_plan, run_cofc


def test_report_has_what_the_issue_names(built):
    report = load_report(built)
    assert set(report.teacher.predicted_ms) == {"orin", "tx2", "nano"} and report.fused.predicted_ms > 0
    assert report.search.evaluations == 5 and len(report.search.history["debo"]) == 5
    fractions = [report.teacher.accuracy, report.fused.accuracy, report.average, *(d.accuracy for d in report.devices)]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert sum(d.spec.dim for d in report.devices) <= 96  # C2 holds for the chosen policy
    assert all(d.mflops <= 5 for d in report.devices)  # C5
    # The FP32 graphs, run through ONNX Runtime, reproduce torch's fused accuracy (the INT8 plan's
    # bundles may ship INT8 graphs: their own accuracy is tested in tests/export/test_quantize.py).
    fp32 = report.fused.accuracy if report.fused.accuracy_fp32 is None else report.fused.accuracy_fp32
    assert abs(fp32 - report.fused.accuracy_torch) <= 0.002
    assert all(check.ok and check.max_abs <= 1e-3 for check in report.export)
    assert set(report.stage_seconds) == {
        "teacher",
        "importance",
        "search",
        "calibrate",
        "export",
        "quantize",
        "bundle",
        "evaluate",
    }
    for name in ("report.md", "search.png", "latency.png"):
        assert (built / name).stat().st_size > 0


def test_the_build_folder_holds_its_plan(built, tmp_path, monkeypatch):
    """The build keeps the plan it was made from with absolute paths, so it loads from any folder
    and names the same teacher, tables and settings."""
    monkeypatch.chdir(tmp_path)
    copy = load_plan(built / "plan.yaml")
    original = load_plan(built.parent / "plan.yaml")
    assert copy.devices == original.devices and copy.calibration == original.calibration
    assert copy.teacher == original.teacher and copy.output.resolve() == built.resolve()


@pytest.mark.e2e
def test_killed_build_resumes(tmp_path):
    plan = make_plan(tmp_path)
    cmd = [str(Path(sys.executable).with_name("cofc")), "build", str(plan)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "out" / "stages" / "search.json"
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the build never finished its search stage"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("teacher", "importance", "search"):
        assert f"stage {stage}: unchanged" in result.stderr
    assert (tmp_path / "out" / "report.json").exists()
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0 and "unchanged" not in forced.stderr


@pytest.mark.e2e
def test_a_deadline_no_policy_meets_is_one_line_naming_it(tmp_path):
    plan = make_plan(tmp_path)
    plan.write_text(plan.read_text().replace("iterations: 2}", "iterations: 2, max_ms: 0.001}"))
    result = run_cofc("build", str(plan))
    assert result.returncode == 1
    floor = (
        r"no decomposition answers sooner than (\d+\.\d\d) ms \((orin|tx2|nano)'s floor, eq\. 3\): "
        r"at most \d+\.\dx the teacher alone on (orin|tx2|nano)"
    )
    said = re.fullmatch(
        f"cofc: error: {re.escape(str(plan))}:8: objective.max_ms: 0.001 ms is too soon: {floor}; "
        "raise max_ms, or use faster devices",
        result.stderr.strip().splitlines()[-1],
    )
    assert said and float(said[1]) > 0.001, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out" / "report.json").exists()
