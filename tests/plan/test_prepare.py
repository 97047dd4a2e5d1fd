"""What a checked plan hands the stages: which training images calibrate, validate and fuse."""
from __future__ import annotations

from pathlib import Path

from cofc.compiler.plan.prepare import prepare
from cofc.compiler.models.datasets import Split

from tests.helpers import make_plan


def _rows(split: Split) -> set[bytes]:
    return {image.tobytes() for image in split.inputs}


def test_calibration_sets_with_and_without_a_held_out_fusion_split(tmp_path: Path):
    plan = make_plan(tmp_path)  # mnist-5k: 4,000 training images; 400 calibrate, 200 validate
    held = prepare(plan)
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
    assert set(zip(map(bytes, train.inputs), train.labels)) >= set(zip(map(bytes, cal.inputs), cal.labels))
