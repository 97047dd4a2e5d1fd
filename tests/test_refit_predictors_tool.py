"""tools/refit_predictors.py on a committed table: the predictor fitted again from the table's own
rows over this version's candidates, stored beside it, and the table's scores rewritten."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from cofc.compiler.latency.predictor import Predictor, fit_predictor, predictor_path
from cofc.compiler.planning.spec import SubModelSpec
from tests.helpers import REPO, load_tool


@pytest.mark.slow  # fits the 600-unit MLP twice
def test_a_table_is_refitted_from_its_own_rows(tmp_path, capsys, monkeypatch):
    table = tmp_path / "cpu-40.json"
    shutil.copy(REPO / "profiles" / "cpu-40.minilm-20ng.json", table)
    rows = json.loads(table.read_text())["rows"]
    monkeypatch.setattr(sys, "argv", ["refit_predictors.py", str(table)])
    load_tool("refit_predictors").main()

    rewritten = json.loads(table.read_text())
    assert rewritten["rows"] == rows and rewritten["predictor"]["chosen"] in ("mlp", "linear", "linear+heads")
    assert json.loads(predictor_path(table).read_text())["kind"] == rewritten["predictor"]["chosen"]
    stored = Predictor.load(predictor_path(table))
    specs = [SubModelSpec.from_dict(r["spec"]) for r in rows[:5]]
    np.testing.assert_allclose(stored.predict(specs), fit_predictor(rewritten).predict(specs), rtol=1e-9)
    kept = rewritten["predictor"]["chosen"]
    within = rewritten["predictor"]["held_out"][kept]["within_10pct"]
    cells = capsys.readouterr().out.splitlines()[2].split(" | ")
    assert cells[:2] == [f"| `{table}`", "100"] and cells[3].startswith(f"{kept} {within:.0%}, RMSE ")
