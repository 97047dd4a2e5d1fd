"""`cofc build` end to end on a small plan: report, bundles, tampering, resume after kill -9."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cofc.runtime.backends import open_backend
from cofc.runtime.backends._calibration import CalibrationBatches, calibration_path
from cofc.runtime.bundle import load_bundle

from tests.helpers import make_plan, run_cofc


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


def test_bundles_round_trip(built):
    bundles = {b.device: b for b in (load_bundle(p) for p in (built / "bundle").iterdir())}
    assert {b.role for b in bundles.values()} == {"central", "worker"}
    central = bundles["orin"]
    assert set(central.manifest["central"]["worker_keys"]) == {"tx2", "nano"}
    assert {b.plan_id for b in bundles.values()} == {central.plan_id}
    assert bundles["nano"].manifest["central"]["public_key"] == central.keys()["public"]
    result = run_cofc("inspect", str(built / "bundle" / "orin"))
    assert result.returncode == 0 and "central" in result.stdout and "verified by sha256" in result.stdout


def test_int8_bundles_carry_calibration_inputs_their_graphs_accept(built):
    """Each graph's INT8 calibration inputs travel in its bundle, hashed, and are valid inputs of
    that graph: ONNX Runtime runs every stored batch through it."""
    for folder in (built / "bundle").iterdir():
        bundle = load_bundle(folder)
        graphs = ["backbone.onnx"] + (["aggregator.onnx"] if bundle.role == "central" else [])
        for graph in graphs:
            path = bundle.file(graph)
            assert calibration_path(path).name in bundle.manifest["files"]
            backend = open_backend("onnxruntime", path)
            batches = CalibrationBatches(calibration_path(path), [s.name for s in backend.inputs])
            assert batches.samples == 400 and batches.batch == 32 and len(batches) == 12  # calibration: 400
            for feeds in batches:
                (out,) = backend.run(feeds).values()
                assert out.shape[0] == 32 and np.isfinite(out).all()
        if bundle.role == "central":
            with np.load(calibration_path(bundle.file("aggregator.onnx"))) as stored:
                mask = stored["mask"]
            assert (mask == 0).any() and (mask.sum(1) >= 1).all()  # some devices missing, never all


@pytest.mark.parametrize("tamper,named", [
    (lambda b: (b / "backbone.onnx").write_bytes((b / "backbone.onnx").read_bytes() + b"\0"), "backbone.onnx"),
    (lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text().replace("int8", "fp16")),
     "manifest.json"),
    (lambda b: (b / "keys.json").unlink(), "keys.json"),
    (lambda b: (b / "extra.onnx").write_bytes(b"x"), "extra.onnx"),
])
def test_tampered_bundle_is_refused_by_name(built, tmp_path, tamper, named):
    copy = tmp_path / "orin"
    shutil.copytree(built / "bundle" / "orin", copy)
    tamper(copy)
    result = run_cofc("inspect", str(copy))
    assert result.returncode == 1
    assert named in result.stderr and "Traceback" not in result.stderr


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
