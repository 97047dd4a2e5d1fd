"""Stage caching: a change reruns exactly the stages that read it, whether it is a plan setting
or the source of a module a stage runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cofc.compiler.pipeline.cache import module_closure, source_digest
from tests.helpers import REPO

AFTER_CALIBRATE = ("calibrate", "export", "quantize", "bundle", "evaluate")


def test_a_stage_counts_the_modules_its_modules_import():
    """The code key of calibrate reaches booster.py (imported by calibrate.py) and the adapter
    interface, and not the search, which calibrate never runs."""
    closure = set(module_closure(("cofc.compiler.calibration.calibrate",)))
    assert {
        "cofc.compiler.calibration.booster",
        "cofc.compiler.models.adapters.base",
        "cofc.compiler.calibration.layer_distill",
    } <= closure
    assert "cofc.compiler.planning.search" not in closure
    assert source_digest(("cofc.compiler.calibration.calibrate",)) != source_digest(("cofc.compiler.planning.search",))


def test_the_stages_before_calibrate_never_reach_the_calibration_modules():
    """The fast check behind the e2e test below: no module that teacher, importance or search runs
    imports calibration, not even through an import kept for the type checker (`plots.py` names
    the frontier, which calibrates, under `if TYPE_CHECKING:`; that import never runs)."""
    from cofc.compiler.pipeline.stages import STAGES

    before = {s.name: s for s in STAGES if s.name in ("teacher", "importance", "search")}
    assert set(before) == {"teacher", "importance", "search"}
    for name, stage in before.items():
        reached = set(module_closure(stage.reads.code))
        assert not {m for m in reached if m.startswith("cofc.compiler.calibration")}, name
    assert "cofc.compiler.pipeline.plots" in module_closure(before["search"].reads.code)


def _copy_build(built: Path, tmp_path: Path) -> Path:
    """The session's built plan folder (plan, teacher, tables and out/), copied so it can change."""
    folder = tmp_path / "plan"
    shutil.copytree(built.parent, folder)
    return folder


def _rebuild(folder: Path, env: dict | None = None) -> tuple[set[str], set[str]]:
    """Build again; which stages were reused and which ran."""
    result = subprocess.run(
        [sys.executable, "-m", "cofc.cli", "build", "plan.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reused = set(re.findall(r"stage (\w+): unchanged", result.stderr))
    ran = set(re.findall(r"stage (\w+) \.\.\.", result.stderr))
    return reused, ran


@pytest.mark.e2e
def test_a_calibration_setting_reruns_calibrate_and_what_follows_only(built, tmp_path):
    folder = _copy_build(built, tmp_path)
    plan = folder / "plan.yaml"
    plan.write_text(plan.read_text().replace("joint_epochs: 1", "joint_epochs: 0"))
    reused, ran = _rebuild(folder)
    assert reused == {"teacher", "importance", "search"}
    assert ran == set(AFTER_CALIBRATE)


@pytest.mark.e2e
def test_an_edited_module_reruns_its_stage_and_what_follows_only(built, tmp_path):
    """Run the build from a copy of the sources with booster.py edited: calibrate (which runs it)
    and every stage after it rerun; an unchanged copy reruns nothing."""
    folder = _copy_build(built, tmp_path)
    src = tmp_path / "src"
    shutil.copytree(REPO / "cofc", src / "cofc", ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("compiler", "runtime"):
        shutil.copytree(REPO / part, src / "cofc" / part, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(src)}
    reused, ran = _rebuild(folder, env)
    assert ran == set() and {"teacher", "importance", "search", *AFTER_CALIBRATE} <= reused
    booster = src / "cofc" / "compiler" / "calibration" / "booster.py"
    booster.write_text(booster.read_text() + "\n# an edit\n")
    reused, ran = _rebuild(folder, env)
    assert reused == {"teacher", "importance", "search"}
    assert ran == set(AFTER_CALIBRATE)
