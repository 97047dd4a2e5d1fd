"""A build's policy predicted under the plan's current latency tables (t1, t2 with the runtime's
measured costs, t3) beside what its bench measured: the check of issue 32's lever 1.

  python tools/predicted_vs_bench.py examples/minilm_20ng_quick.yaml docs/reports/minilm-20ng-quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cofc.compiler.models.teacher import teacher_from_plan
from cofc.compiler.pipeline.context import device_models
from cofc.compiler.plan import load_plan
from cofc.compiler.planning.objective import latency
from cofc.compiler.planning.spec import SubModelSpec
from cofc.runtime.preprocess import packed_request_bytes

VOCAB = 30_522  # MiniLM's: its ids travel as uint16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", type=Path)
    ap.add_argument("build", type=Path, help="a folder with the build's report.json and bench.json")
    args = ap.parse_args()
    plan = load_plan(args.plan)
    base = teacher_from_plan(plan).spec
    devices = device_models(plan, base)
    report = json.loads((args.build / "report.json").read_text())
    bench = json.loads((args.build / "bench.json").read_text())
    policy = tuple(
        SubModelSpec(s["layers"], s["dim"], tuple(s["heads"]), tuple(s["mlp"]))
        for s in (d["spec"] for d in report["devices"])
    )
    lat = latency(policy, devices, base, packed_request_bytes("text", max_length=base.tokens, vocab_size=VOCAB))
    print("| device | t1 pred | t1 meas | t2 pred | t2 meas |\n|---|---|---|---|---|")
    for n, d in enumerate(devices):
        p = bench["phases"][d.name]
        print(f"| {d.name} | {lat.t1[n]:.2f} | {p['t1_ms']:.2f} | {lat.t2[n]:.2f} | {p['t2_ms']:.2f} |")
    print(
        f"t3 {lat.t3:.2f} predicted, {bench['t3_ms']:.2f} measured; T {lat.total:.2f} predicted, critical path "
        f"{bench['critical_path_ms']:.2f} and end-to-end median {bench['end_to_end_ms']['median']:.2f} measured"
    )


if __name__ == "__main__":
    main()
