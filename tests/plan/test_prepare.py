"""What a checked plan hands the stages: which training images calibrate, validate and fuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import save_teacher
from cofc.compiler.plan.prepare import prepare
from tests.helpers import PLAN, small_record


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """The small test plan (mnist-5k, three devices) with a 10-class teacher and latency tables
    that hold only what the plan loader reads: `prepare` needs no fitted predictor."""
    torch.manual_seed(0)
    record = small_record("vit")
    record["arch"]["num_classes"], record["classes"] = 10, [str(i) for i in range(10)]
    record["state_dict"] = get_adapter("vit").build_teacher(record).state_dict()
    save_teacher(tmp_path / "teacher.pt", record)
    for board in ("orin-nano", "jetson-tx2", "jetson-nano"):
        (tmp_path / f"{board}.json").write_text(json.dumps({"rows": [{"ms": 1.0}]}))
    (tmp_path / "plan.yaml").write_text(PLAN.replace("PORT", "5555"))
    return tmp_path / "plan.yaml"


def _rows(split: Split) -> set[bytes]:
    return {image.tobytes() for image in split.inputs}


def test_calibration_sets_with_and_without_a_held_out_fusion_split(plan: Path):
    held = prepare(plan)  # mnist-5k: 4,000 training images; 400 calibrate, 200 validate
    plan.write_text(plan.read_text().replace("layer_distill: 1.0}", "layer_distill: 1.0, held_out_fusion: false}"))
    pooled = prepare(plan)
    assert held.plan.calibration.held_out_fusion and not pooled.plan.calibration.held_out_fusion

    train, fusion = held.calibration_sets()
    cal, val, _, _ = held.splits()
    assert _rows(train) == _rows(cal) and len(train) == 400
    assert len(fusion) == 400 and not _rows(fusion) & (_rows(train) | _rows(val))

    train, fusion = pooled.calibration_sets()
    assert fusion is None
    assert len(train) == 4000 - 200 and not _rows(train) & _rows(val)
    assert _rows(train) | _rows(val) == _rows(held.data.train)
    # the split that ranks units and the one the search validates on do not change
    pooled_cal, pooled_val, _, _ = pooled.splits()
    assert _rows(pooled_cal) == _rows(cal) and _rows(pooled_val) == _rows(val)
    assert set(zip(map(bytes, train.inputs), train.labels, strict=True)) >= set(
        zip(map(bytes, cal.inputs), cal.labels, strict=True)
    )
