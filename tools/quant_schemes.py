"""Compare ways of quantizing a built plan's graphs for ONNX Runtime: QDQ or QOperator format,
weights per channel or per tensor (compiler/export/quantize.py ships one: this measures why).

  python tools/quant_schemes.py BUILD [-n 500] [--json out.json]

BUILD is an INT8 build folder (`cofc build --precision int8`): its graphs' calibration inputs are
in BUILD/onnx/. For each scheme, every device's backbone, the aggregator and the teacher are
quantized into a temporary folder from those inputs, and measured on the first N test samples:
the fused accuracy with every graph at that scheme, the teacher's accuracy, and the median ms of
one request through each graph on this host (one thread). FP32 is the first row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cofc.compiler.export.onnx import FEATURES, MASK
from cofc.compiler.export.precision import outputs
from cofc.compiler.export.quantize import Scheme, quantize_graph, stored_calibration
from cofc.compiler.latency.profile import time_calls
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.runtime.backends import open_backend
from cofc.runtime.bundle import load_bundle
from cofc.runtime.preprocess import Preprocessor

SCHEMES = (
    Scheme("qdq", True, "int8"),
    Scheme("qdq", True, "uint8"),
    Scheme("qdq", False, "int8"),
    Scheme("qoperator", True, "uint8"),
    Scheme("qoperator", False, "uint8"),
)


@dataclass(frozen=True)
class Row:
    scheme: str
    fused_accuracy: float
    teacher_accuracy: float
    ms: dict[str, float]  # graph -> median ms of one request on this host


def measure(build: Path, samples: int) -> list[Row]:
    plan = load_plan(build / PLAN_COPY)
    names = [d.name for d in plan.devices]
    central = load_bundle(build / "bundle" / plan.central.name)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(samples, seed=1)
    inputs = Preprocessor.for_bundle(central)(test.inputs)
    onnx_dir = build / "onnx"
    fp32 = {g: onnx_dir / f"{g}.onnx" for g in (*names, "aggregator", "teacher")}
    rows = [_row("FP32", fp32, names, inputs, test.labels)]
    with tempfile.TemporaryDirectory() as tmp:
        for scheme in SCHEMES:
            twins = {
                g: quantize_graph(
                    path,
                    stored_calibration(fp32[names[0]] if g == "teacher" else path),
                    scheme,
                    Path(tmp) / f"{g}.onnx",
                )
                for g, path in fp32.items()
            }
            rows.append(_row(str(scheme), twins, names, inputs, test.labels))
            print(rows[-1], file=sys.stderr)
    return rows


def _ms(graph: Path, feeds: dict[str, np.ndarray]) -> float:
    """Median ms of one request (the first sample) through `graph`, one thread."""
    with open_backend("onnxruntime", graph, threads=1) as engine:
        one = {s.name: np.ascontiguousarray(feeds[s.name][:1]) for s in engine.inputs}
        return time_calls(lambda: engine.run(one))["ms"]


def _row(
    scheme: str,
    graphs: dict[str, Path],
    names: list[str],
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
) -> Row:
    features = [outputs(graphs[n], inputs) for n in names]
    mask = np.ones((len(labels), len(names)), np.float32)
    logits = outputs(graphs["aggregator"], {FEATURES: np.concatenate(features, 1), MASK: mask})
    teacher = outputs(graphs["teacher"], inputs)
    fused_feeds = {FEATURES: np.concatenate(features, 1), MASK: mask}
    ms = {g: _ms(path, fused_feeds if g == "aggregator" else inputs) for g, path in graphs.items()}
    return Row(scheme, float((logits.argmax(-1) == labels).mean()), float((teacher.argmax(-1) == labels).mean()), ms)


def markdown(rows: list[Row]) -> str:
    graphs = list(rows[0].ms)
    lines = [
        "| scheme | fused accuracy | teacher accuracy | " + " | ".join(f"{g} ms" for g in graphs) + " |",
        "|---|---|---|" + "---|" * len(graphs),
    ]
    for r in rows:
        cells = [f"{100 * r.fused_accuracy:.2f}%", f"{100 * r.teacher_accuracy:.2f}%"]
        lines.append(f"| {r.scheme} | " + " | ".join(cells + [f"{r.ms[g]:.3f}" for g in graphs]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path)
    parser.add_argument("-n", "--samples", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = measure(args.build, args.samples)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
