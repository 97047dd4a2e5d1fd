"""Write estimated latency tables for the Jetson boards (compiler/roofline.py), one per board,
over the same model pool that `cofc profile` measures, with their fitted predictors.

  python tools/estimate_profiles.py --teacher examples/teachers/vit_fashion_mnist.pt --tag vit-fmnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cofc.compiler.latency.predictor import fit_and_store
from cofc.compiler.latency.profile import model_pool
from cofc.compiler.latency.roofline import BOARDS, estimated_table
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.teacher import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--tag", required=True, help="model tag in the file name, e.g. vit-fmnist")
    parser.add_argument("--out-dir", type=Path, default=Path("profiles"))
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    teacher = load_teacher(args.teacher)
    base = get_adapter(teacher.family).spec(teacher.model)
    pool = model_pool(base, args.count, args.seed)
    for board in BOARDS.values():
        table = estimated_table(teacher.family, base, board, pool)
        out = args.out_dir / f"{board.name}.{args.tag}.json"
        predictor = fit_and_store(out, table, seed=args.seed)
        held = predictor.scores["held_out"][predictor.kind]
        print(
            f"{out}: {len(table['rows'])} estimated rows, predictor {predictor.kind} "
            f"{held['within_10pct']:.0%} within ±10%"
        )


if __name__ == "__main__":
    main()
