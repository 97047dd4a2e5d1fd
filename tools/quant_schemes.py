"""Compare ways of quantizing a built plan's graphs for ONNX Runtime: QDQ or QOperator format,
weights per channel or per tensor (compiler/export/quantize.py ships one: this measures why).

  python tools/quant_schemes.py BUILD [-n 500] [--json out.json]

BUILD is an INT8 build folder (`cofc build --precision int8`): its graphs' calibration inputs are
in BUILD/onnx/. For each scheme, every device's backbone, the aggregator and the teacher are
quantized into a temporary folder from those inputs, and measured on the first N test samples:
the fused accuracy with every graph at that scheme, the teacher's accuracy, and the median ms of
one request through each graph on this host (one thread; every scheme's twin of a graph timed in
turns with the others, three rounds, so that the host's load hits them alike; the aggregator
timed on the FP32 features). FP32 is the first row.
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
from cofc.compiler.export.precision import outputs, speeds
from cofc.compiler.export.quantize import Scheme, quantize_graph, stored_calibration
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.runtime.bundle import load_bundle
from cofc.runtime.preprocess import Preprocessor

SCHEMES = (
    Scheme("qdq", True, "int8"),
    Scheme("qdq", True, "uint8"),
    Scheme("qdq", False, "int8"),
    Scheme("qoperator", True, "uint8"),
    Scheme("qoperator", False, "uint8"),
    Scheme("qdq", True, "uint8", weights_only=True),
    Scheme("qoperator", True, "uint8", weights_only=True),
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
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"FP32": fp32}
        for k, scheme in enumerate(SCHEMES):
            (Path(tmp) / str(k)).mkdir()
            variants[str(scheme)] = {
                g: quantize_graph(
                    path,
                    stored_calibration(fp32[names[0]] if g == "teacher" else path),
                    scheme,
                    Path(tmp) / str(k) / f"{g}.onnx",
                )
                for g, path in fp32.items()
            }
        accuracies = {v: _accuracies(graphs, names, inputs, test.labels) for v, graphs in variants.items()}
        features = np.concatenate([outputs(fp32[n], inputs) for n in names], 1)
        fused_feeds = {FEATURES: features, MASK: np.ones((len(features), len(names)), np.float32)}
        ms: dict[str, dict[str, float]] = {}  # graph -> variant -> ms
        for g in fp32:  # each graph's variants timed in turns, so that the host's load hits them alike
            timed = speeds([v[g] for v in variants.values()], fused_feeds if g == "aggregator" else inputs)
            ms[g] = dict(zip(variants, timed, strict=True))
    return [Row(v, *accuracies[v], {g: ms[g][v] for g in fp32}) for v in variants]


def _accuracies(
    graphs: dict[str, Path], names: list[str], inputs: dict[str, np.ndarray], labels: np.ndarray
) -> tuple[float, float]:
    """Fused accuracy with every graph of one variant, and its teacher's."""
    features = [outputs(graphs[n], inputs) for n in names]
    mask = np.ones((len(labels), len(names)), np.float32)
    logits = outputs(graphs["aggregator"], {FEATURES: np.concatenate(features, 1), MASK: mask})
    teacher = outputs(graphs["teacher"], inputs)
    return float((logits.argmax(-1) == labels).mean()), float((teacher.argmax(-1) == labels).mean())


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
