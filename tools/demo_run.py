"""Run a built plan as on the devices, on this machine: every worker with `cofc run --bundle`,
then the central device answering real test inputs with `cofc run --bundle ... --input FILE`
(a .npy of images, or a JSONL file of texts).

  python tools/demo_run.py build/minilm-20ng-quick [-n 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.runtime.bundle import load_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    plan = load_plan(args.build / PLAN_COPY)  # the plan the build was made from, kept beside its report
    central = load_bundle(args.build / "bundle" / plan.central.name)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(args.n, seed=2)
    cofc = [sys.executable, "-m", "cofc.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(test.inputs, np.ndarray):
            inputs = Path(tmp) / "inputs.npy"
            np.save(inputs, test.inputs)
        else:
            inputs = Path(tmp) / "inputs.jsonl"
            inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in test.inputs), encoding="utf-8")
        workers = [
            subprocess.Popen([*cofc, "run", "--bundle", str(args.build / "bundle" / d.name)])
            for d in plan.devices
            if not d.central
        ]
        try:
            out = subprocess.run(
                [*cofc, "run", "--bundle", str(central.path), "--input", str(inputs)],
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            for w in workers:
                w.kill()
    if out.returncode != 0:
        sys.exit(out.stderr)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    answers.sort(key=lambda a: a["id"])
    correct = sum(a["prediction"] == y for a, y in zip(answers, test.labels, strict=True))
    first = answers[0]
    print(f"first answer: {first['label']} (class {first['prediction']}), timings {first['timings']}")
    print(
        f"{len(answers)} answers from cofc run ({sum(a['degraded'] for a in answers)} degraded): "
        f"accuracy {correct / len(answers):.4f} on {len(answers)} {plan.dataset.name} test inputs"
    )


if __name__ == "__main__":
    main()
