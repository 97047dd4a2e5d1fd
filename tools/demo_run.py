"""Run a built plan as on the devices, on this machine: every worker with `cofc run --bundle`,
then the central device answering real test inputs with `cofc run --bundle ... --input FILE`.

  python tools/demo_run.py build/vit [-n 200]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cofc.compiler.build.report import PLAN_COPY
from cofc.compiler.models.datasets import load_dataset
from cofc.compiler.plan import load_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    plan = load_plan(args.build / PLAN_COPY)  # the plan the build was made from, kept beside its report
    test = load_dataset(plan.dataset.name).test.take(args.n, seed=2)
    cofc = [sys.executable, "-m", "cofc.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(test.inputs, np.ndarray):
            inputs = Path(tmp) / "inputs.npy"
            np.save(inputs, test.inputs)
        else:
            inputs = Path(tmp) / "inputs.txt"
            inputs.write_text("\n".join(t.replace("\n", " ") for t in test.inputs) + "\n")
        workers = [subprocess.Popen([*cofc, "run", "--bundle", str(args.build / "bundle" / d.name)])
                   for d in plan.devices if not d.central]
        try:
            central = args.build / "bundle" / plan.central.name
            out = subprocess.run([*cofc, "run", "--bundle", str(central), "--input", str(inputs)],
                                 capture_output=True, text=True, timeout=600)
        finally:
            for w in workers:
                w.kill()
    if out.returncode != 0:
        sys.exit(out.stderr)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    answers.sort(key=lambda a: a["id"])
    correct = sum(a["prediction"] == y for a, y in zip(answers, test.labels))
    print(out.stdout.splitlines()[0])
    print(f"{len(answers)} answers from cofc run ({sum(a['degraded'] for a in answers)} degraded): "
          f"accuracy {correct / len(answers):.4f} on {plan.dataset.name} test images")


if __name__ == "__main__":
    main()
