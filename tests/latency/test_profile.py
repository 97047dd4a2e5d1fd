"""Latency tables: the model pool, real ORT timing, resume after kill -9, predictors, roofline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cofc.compiler.latency.predictor import Predictor, _fit_linear, fit_predictor, predictor_path
from cofc.compiler.latency.profile import model_pool, run_profile
from cofc.compiler.latency.roofline import BOARDS, DEIT_B, estimate_ms
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.teacher import load_teacher, save_teacher
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops, parameters
from cofc.errors import CofcError
from tests.helpers import make_plan, run_cofc, small_record

BASE = TransformerSpec(
    layers=6, dim=96, heads=6, mlp=192, head_dim=16, tokens=50, classes=10, embed_in=16, embed_params_per_dim=68
)


@pytest.fixture
def vit_teacher_file(tmp_path) -> Path:
    torch.manual_seed(0)
    record = small_record("vit")
    record["state_dict"] = get_adapter("vit").build_teacher(record).state_dict()
    path = tmp_path / "teacher.pt"
    save_teacher(path, record)
    return path


def test_model_pool_spans_the_teacher():
    pool = model_pool(BASE, 120, seed=0)
    assert len(pool) == len(set(pool)) == 120
    assert {s.layers for s in pool} == set(range(1, 7))
    assert all(s.dim % 16 == 0 and s.dim <= 96 and max(s.heads) <= 6 and max(s.mlp) <= 192 for s in pool)
    assert sum(len(set(s.heads)) > 1 for s in pool) > 10  # ragged specs are there
    assert model_pool(BASE, 120, seed=0) == pool and model_pool(BASE, 40, seed=0) == pool[:40]


def test_profile_measures_and_round_trips(vit_teacher_file, tmp_path):
    out = tmp_path / "host.json"
    table = run_profile(load_teacher(vit_teacher_file), out, "test-host", count=12)
    again = json.loads(out.read_text())
    assert again == table
    prov = table["provenance"]
    assert prov["backend"] == "onnxruntime" and prov["threads"] == 1 and prov["estimated"] is False
    assert prov["inputs"] == {"pixel_values": [1, 1, 28, 28]} and prov["cpu"]
    assert len(table["rows"]) == 12
    assert all(0 < r["p10"] <= r["ms"] <= r["p90"] for r in table["rows"])
    # Real timings: the largest spec (9x the smallest's FLOPs) is slower than the smallest one.
    # Compared on the 10th percentile, which a burst of load on a shared machine does not move.
    by_flops = sorted(table["rows"], key=lambda r: r["flops"])
    assert by_flops[-1]["p10"] > by_flops[0]["p10"]


def test_table_of_another_teacher_is_not_resumed(vit_teacher_file, tmp_path):
    out = tmp_path / "host.json"
    out.write_text(json.dumps({"format": "cofc-profile/1", "provenance": {"device": "x"}, "rows": []}))
    with pytest.raises(CofcError, match="another device, backend or teacher"):
        run_profile(load_teacher(vit_teacher_file), out, "test-host", count=10)


@pytest.mark.slow
def test_killed_profile_keeps_rows_and_resumes(vit_teacher_file, tmp_path):
    out = tmp_path / "host.json"
    cmd = [
        str(Path(sys.executable).with_name("cofc")),
        "profile",
        "--teacher",
        str(vit_teacher_file),
        "--out",
        str(out),
        "--count",
        "30",
        "--device",
        "test-host",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    rows = []
    while time.time() < deadline and len(rows) < 4:
        time.sleep(0.2)
        try:
            rows = json.loads(out.read_text())["rows"]
        except (OSError, ValueError, KeyError):
            rows = []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = json.loads(out.read_text())["rows"]  # still valid JSON: written atomically
    assert 4 <= len(kept) < 30
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = json.loads(out.read_text())
    assert len(final["rows"]) == 30 and final["rows"][: len(kept)] == kept  # nothing re-measured
    assert "within ±10%" in done.stdout and predictor_path(out).with_suffix(".npz").exists()


def _synthetic_table(fn) -> dict:
    pool = model_pool(BASE, 150, seed=1)
    return {
        "provenance": {"teacher": {k: getattr(BASE, k) for k in BASE.__dataclass_fields__}},
        "rows": [{"spec": s.to_dict(), "ms": fn(s)} for s in pool],
    }


def _linear_ms(s: SubModelSpec) -> float:
    a, b, c, g, e = 0.02, 0.5, 0.07, 0.011, 0.3  # ms per MFLOP, per M params, per layer, per head, fixed
    return a * flops(s, BASE) / 1e6 + b * parameters(s, BASE) / 1e6 + c * s.layers + g * sum(s.heads) + e


def test_linear_predictor_recovers_a_known_function():
    table = _synthetic_table(_linear_ms)
    specs = [SubModelSpec.from_dict(r["spec"]) for r in table["rows"]]
    coef = _fit_linear(specs, np.array([r["ms"] for r in table["rows"]]), BASE, "linear+heads")["coef"]
    np.testing.assert_allclose(coef, [0.02, 0.5, 0.07, 0.011, 0.3], rtol=1e-6)


@pytest.mark.slow  # fits the 600-unit MLP beside the linear model
def test_fitted_predictor_keeps_the_candidate_that_predicts_held_out_rows_best():
    predictor = fit_predictor(_synthetic_table(_linear_ms))
    held = predictor.scores["held_out"]
    assert held["linear+heads"]["within_10pct"] == 1.0 and held["linear+heads"]["rmse_ms"] < 1e-6
    assert held["linear"]["rmse_ms"] > 0.01  # no per-head term: it cannot fit this table exactly
    assert predictor.kind == predictor.scores["chosen"] == "linear+heads"


@pytest.mark.slow  # fits the 600-unit MLP twice (held-out split, then all rows)
def test_mlp_predictor_learns_a_nonlinear_function(tmp_path):
    fn = lambda s: 0.2 + 0.05 * s.layers * (s.dim / 16) ** 1.5 * (1 + s.mean_heads / 6)  # noqa: E731
    predictor = fit_predictor(_synthetic_table(fn))
    held = predictor.scores["held_out"]
    assert held["mlp"]["within_10pct"] >= 0.8 and predictor.kind == "mlp"
    predictor.save(tmp_path / "p.json")
    loaded = Predictor.load(tmp_path / "p.json")
    probe = model_pool(BASE, 20, seed=7)
    np.testing.assert_allclose(loaded.predict(probe), predictor.predict(probe), rtol=1e-6)
    truth = np.array([fn(s) for s in probe])
    assert np.median(np.abs(loaded.predict(probe) - truth) / truth) < 0.1


def test_roofline_is_anchored_and_orders_the_boards():
    assert estimate_ms(DEIT_B.full(), DEIT_B, BOARDS["jetson-tx2"]) == pytest.approx(127.0)
    small = SubModelSpec(4, 32, (2,) * 4, (64,) * 4)
    nano, tx2 = (estimate_ms(DEIT_B.full(), DEIT_B, BOARDS[b]) for b in ("jetson-nano", "jetson-tx2"))
    assert nano > 2 * tx2
    assert estimate_ms(small, BASE, BOARDS["jetson-nano"]) < estimate_ms(BASE.full(), BASE, BOARDS["jetson-nano"])


@pytest.mark.parametrize(
    "args,words",
    [
        (["--plan", "PLAN"], "--plan needs --device, one of the plan's devices: orin, tx2, nano"),
        (["--plan", "PLAN", "--device", "xavier"], "one of the plan's devices: orin, tx2, nano"),
        (["--plan", "PLAN", "--teacher", "t.pt", "--device", "orin"], "give one of --teacher and --plan"),
        (["--teacher", "t.pt"], "--teacher needs --out"),
    ],
)
def test_profile_names_what_is_missing_before_measuring(args, words, tmp_path):
    """A plan's tables need not exist to profile it, but its device must be named."""
    plan = make_plan(tmp_path)
    for table in tmp_path.glob("*.json"):
        table.unlink()
    result = run_cofc("profile", *[str(plan) if a == "PLAN" else a for a in args], cwd=tmp_path)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.json"))


def test_int8_profile_times_quantized_graphs(vit_teacher_file, tmp_path):
    """`--precision int8` under ONNX Runtime times each spec's QDQ twin, and says so."""
    table = run_profile(load_teacher(vit_teacher_file), tmp_path / "t.json", "host", precision="int8", count=2)
    assert table["provenance"]["precision"] == "int8" and len(table["rows"]) == 2
    assert all(r["ms"] > 0 for r in table["rows"])


def test_fp16_profile_on_onnxruntime_without_a_gpu_is_one_line(vit_teacher_file, tmp_path):
    result = run_cofc(
        "profile", "--teacher", str(vit_teacher_file), "--out", str(tmp_path / "t.json"), "--precision", "fp16"
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "fp16 changes nothing under ONNX Runtime" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t.json").exists()
