"""`cofc build` end to end on a small plan: the report, and resuming after kill -9."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


from tests.helpers import make_plan


def test_report_has_what_the_issue_names(built):
    report = json.loads((built / "report.json").read_text())
    for key in ("accuracy", "predicted_ms"):
        assert key in report["teacher"] and key in report["fused"]
    assert set(report["teacher"]["predicted_ms"]) == {"orin", "tx2", "nano"}
    assert report["search"]["evaluations"] == 5 and len(report["search"]["history"]["debo"]) == 5
    fractions = [report["teacher"]["accuracy"], report["fused"]["accuracy"], report["average"]["accuracy"],
                 *(d["accuracy"] for d in report["devices"])]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert sum(d["spec"]["dim"] for d in report["devices"]) <= 96  # C2 holds for the chosen policy
    assert all(d["mflops"] <= 5 for d in report["devices"])  # C5
    # The shipped bundles, run through ONNX Runtime, reproduce torch's fused accuracy.
    assert abs(report["fused"]["accuracy"] - report["fused"]["accuracy_torch"]) <= 0.002
    assert all(check["ok"] and check["max_abs"] <= 1e-3 for check in report["export"])
    for name in ("report.md", "search.png", "latency.png"):
        assert (built / name).stat().st_size > 0


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
        assert f"stage {stage}: done earlier" in result.stderr
    assert (tmp_path / "out" / "report.json").exists()
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0 and "done earlier" not in forced.stderr
