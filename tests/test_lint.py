"""The project's own checks, run by the test command so that CI keeps them green: ruff's lint rules and
formatter, mypy over the package (tools/typecheck.py), and Polygraphy's ONNX linter over the graphs a
small build exports, so that a graph TensorRT users would refuse fails here first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_ruff_lint_passes():
    done = _run(BIN / "ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is():
    done = _run(BIN / "ruff", "format", "--no-cache", "--check", ".")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_type_checker_passes():
    done = _run(sys.executable, REPO / "tools" / "typecheck.py")
    assert done.returncode == 0 and "Success" in done.stdout, done.stdout[-8000:] + done.stderr[-2000:]


def test_lint_rules_catch_what_they_are_chosen_for(tmp_path):
    """The configured rule families are on: an unused import (pyflakes), imports out of order (isort),
    a mutable default (bugbear) and an old-style annotation (pyupgrade) are each reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\nfrom typing import List\n\n\ndef f(x: List[int] = []) -> None:\n    pass\n")
    done = _run(
        BIN / "ruff", "check", "--no-cache", "--output-format", "concise", "--config", REPO / "pyproject.toml", bad
    )
    found = {line.split()[1] for line in done.stdout.splitlines() if line.startswith(str(bad))}
    assert done.returncode == 1
    assert {"F401", "I001", "B006", "UP006"} <= found, done.stdout


@pytest.mark.slow
def test_exported_graphs_pass_polygraphy_lint(built, tmp_path):
    """Every ONNX graph the small build bundles (each device's sub-model and the aggregator) passes
    `polygraphy check lint`, which runs ONNX's checker and ONNX Runtime node by node."""
    graphs = sorted((built / "bundle").glob("*/*.onnx"))
    assert len(graphs) >= 3, graphs  # two devices' sub-models and the aggregator at least
    for graph in graphs:
        report = tmp_path / f"{graph.parent.name}-{graph.stem}.json"
        done = _run(BIN / "polygraphy", "check", "lint", graph, "-o", report)
        assert done.returncode == 0, f"{graph}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        lint = json.loads(report.read_text())
        assert lint["summary"]["failing"] == [], (graph, lint)
