"""Fit latency tables' predictors again from the rows they hold (no device time), after the
predictor's candidates changed, and print each table's held-out scores before and after.

  python tools/refit_predictors.py profiles/*.minilm-20ng.json profiles/amd-epyc/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cofc.compiler.latency.predictor import fit_and_store


def _scores(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "none"
    kept = entry["chosen"]
    other = ", ".join(f"{k} {v['within_10pct']:.0%}" for k, v in entry["held_out"].items() if k != kept)
    held = entry["held_out"][kept]
    return f"{kept} {held['within_10pct']:.0%}, RMSE {held['rmse_ms']:.2f} ms (other: {other})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", type=Path, nargs="+")
    parser.add_argument("--seed", type=int, default=0, help="the held-out split's seed (cofc profile's --seed)")
    args = parser.parse_args()
    print("| table | rows | before: kept, held-out rows within ±10% | after |")
    print("|---|---|---|---|")
    for path in args.tables:
        table = json.loads(path.read_text())
        before = _scores(table.get("predictor"))
        fit_and_store(path, table, seed=args.seed)
        print(f"| `{path}` | {len(table['rows'])} | {before} | {_scores(table['predictor'])} |")


if __name__ == "__main__":
    main()
