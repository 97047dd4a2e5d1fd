"""The bundles of a built plan: what each holds, INT8 calibration inputs, and tampering refused by name."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cofc.runtime.backends import open_backend
from cofc.runtime.backends._calibration import CalibrationBatches, calibration_path
from cofc.runtime.bundle import load_bundle
from cofc.runtime.manifest import SCHEMA
from tests.helpers import run_cofc


def test_bundles_round_trip(built):
    bundles = {b.device: b for b in (load_bundle(p) for p in (built / "bundle").iterdir())}
    assert {b.role for b in bundles.values()} == {"central", "worker"}
    central = bundles["orin"]
    assert {w.name for w in central.fusion.workers} == {"tx2", "nano"}
    assert {b.plan_id for b in bundles.values()} == {central.plan_id}
    assert bundles["nano"].manifest.central.public_key == central.keys().public
    result = run_cofc("inspect", str(built / "bundle" / "orin"))
    assert result.returncode == 0 and "central" in result.stdout and "verified by sha256" in result.stdout
    assert f"manifest schema {SCHEMA}" in result.stdout and "fuses:     orin (" in result.stdout
    # How raw images become its inputs: the small plan's teacher (28x28 grey, mean 0.13, std 0.31).
    assert (
        "reads:     images as grey 28x28 (bilinear, crop 1), normalised by mean [0.13], std [0.31]" in result.stdout
    ), result.stdout


def test_int8_bundles_carry_calibration_inputs_their_graphs_accept(built):
    """Each graph's INT8 calibration inputs travel in its bundle, hashed, and are valid inputs of
    that graph: ONNX Runtime runs every stored batch through it."""
    for folder in (built / "bundle").iterdir():
        bundle = load_bundle(folder)
        graphs = ["backbone.onnx"] + (["aggregator.onnx"] if bundle.role == "central" else [])
        for graph in graphs:
            path = bundle.file(graph)
            assert calibration_path(path).name in bundle.manifest.files
            with open_backend("onnxruntime", path) as backend:
                batches = CalibrationBatches(calibration_path(path), [s.name for s in backend.inputs])
                assert batches.samples == 400 and batches.batch == 32 and len(batches) == 12  # calibration: 400
                for feeds in batches:
                    (out,) = backend.run(feeds).values()
                    assert out.shape[0] == 32 and np.isfinite(out).all()
        if bundle.role == "central":
            with np.load(calibration_path(bundle.file("aggregator.onnx"))) as stored:
                mask = stored["mask"]
            assert (mask == 0).any() and (mask.sum(1) >= 1).all()  # some devices missing, never all


@pytest.mark.parametrize(
    "tamper,named",
    [
        (lambda b: (b / "backbone.onnx").write_bytes((b / "backbone.onnx").read_bytes() + b"\0"), "backbone.onnx"),
        (
            lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text().replace("int8", "fp16")),
            "manifest.json",
        ),
        (lambda b: (b / "keys.json").unlink(), "keys.json"),
        (lambda b: (b / "extra.onnx").write_bytes(b"x"), "extra.onnx"),
    ],
)
def test_tampered_bundle_is_refused_by_name(built, tmp_path, tamper, named):
    copy = tmp_path / "orin"
    shutil.copytree(built / "bundle" / "orin", copy)
    tamper(copy)
    result = run_cofc("inspect", str(copy))
    assert result.returncode == 1
    assert named in result.stderr and "Traceback" not in result.stderr
