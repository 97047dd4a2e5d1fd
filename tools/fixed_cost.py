"""What a request's fixed cost is made of, and whether folding the graph's shape arithmetic cuts it
(issue 32, lever "less fixed cost per request"): a build's teacher and sub-models, each run by ONNX
Runtime as exported (dynamic batch), and as the runtime could run it, one request at a time:

  exported    the graph the bundle ships (batch a free dimension)
  batch-1     ONNX Runtime told the batch is 1 (a free-dimension override): its optimiser then
              folds every Shape/Gather/Concat of the batch and can fuse what static shapes allow
  folded      the graph itself re-exported for batch 1, shapes inferred and constants folded
              with onnx-graphsurgeon (Polygraphy's `surgeon sanitize --fold-constants`)
  batch-1, no MatMul+Add fusion
              the override without ONNX Runtime's MatMulAddFusion (which turns each MatMul + Add
              into Reshape, Gemm, Reshape once shapes are static)

For each: nodes as exported, nodes after ONNX Runtime's optimiser, and the median CPU time of one
request (one thread; the variants timed in turns, five rounds, so that the host's load hits them
alike), with the largest output difference from the exported graph.

  python tools/fixed_cost.py build/minilm-20ng-quick [--graphs teacher,fast,mid,slow] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from cofc.compiler.export.onnx import _ort_warnings_off
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.runtime.bundle import load_bundle
from cofc.runtime.preprocess import Preprocessor

ROUNDS = 5


@dataclass(frozen=True)
class Variant:
    name: str
    graph: str  # "exported" or "folded": which file
    batch_override: bool
    disabled: tuple[str, ...] = ()


VARIANTS = (
    Variant("exported", "exported", False),
    Variant("batch-1", "exported", True),
    Variant("folded", "folded", False),
    Variant("batch-1, no MatMul+Add fusion", "exported", True, ("MatMulAddFusion",)),
)


@dataclass(frozen=True)
class Row:
    graph: str
    variant: str
    nodes: int  # in the file
    nodes_optimised: int  # after ONNX Runtime's optimiser
    cpu_ms: float  # median CPU time of one request, one thread
    max_diff: float  # largest output difference from the exported graph


def fold_for_batch_1(src: Path, dst: Path) -> onnx.ModelProto:
    """The graph with batch 1 written into its inputs and outputs, shapes inferred and constants
    folded until nothing changes (three passes suffice here)."""
    import onnx_graphsurgeon as gs

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    for _ in range(3):
        graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
        with _ort_warnings_off():
            graph.fold_constants()
        model = gs.export_onnx(graph.cleanup().toposort())
    onnx.save(model, str(dst))
    return model


def session(path: Path, v: Variant, optimised: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimised)
    if v.batch_override:
        options.add_free_dimension_override_by_name("batch", 1)
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(v.disabled)
    )


def cpu_ms(s: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.thread_time()
        s.run(None, feeds)
        times.append((time.thread_time() - began) * 1e3)
    return statistics.median(times)


def measure(build: Path, graphs: list[str], tmp: Path) -> list[Row]:
    plan = load_plan(build / PLAN_COPY)
    central = load_bundle(build / "bundle" / plan.central.name)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(1, seed=1)
    one = Preprocessor.for_bundle(central)(test.inputs)
    rows = []
    for name in graphs:
        files = {"exported": build / "onnx" / f"{name}.onnx", "folded": tmp / f"{name}.folded.onnx"}
        nodes = {"exported": len(onnx.load(str(files["exported"])).graph.node)}
        nodes["folded"] = len(fold_for_batch_1(files["exported"], files["folded"]).graph.node)
        sessions = [session(files[v.graph], v, tmp / f"{name}.{k}.opt.onnx") for k, v in enumerate(VARIANTS)]
        feeds = {i.name: one[i.name] for i in sessions[0].get_inputs()}
        want = sessions[0].run(None, feeds)[0]
        runs = max(10, int(300 / (1 + 1e3 * _seconds(sessions[0], feeds))))  # ~0.3 s a round
        times: list[list[float]] = [[] for _ in VARIANTS]
        for _ in range(ROUNDS):
            for s, t in zip(sessions, times, strict=True):
                t.append(cpu_ms(s, feeds, runs))
        for k, (v, s, t) in enumerate(zip(VARIANTS, sessions, times, strict=True)):
            rows.append(
                Row(
                    name,
                    v.name,
                    nodes[v.graph],
                    len(onnx.load(str(tmp / f"{name}.{k}.opt.onnx")).graph.node),
                    statistics.median(t),
                    float(np.abs(s.run(None, feeds)[0] - want).max()),
                )
            )
    return rows


def _seconds(s: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> float:
    began = time.perf_counter()
    s.run(None, feeds)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", type=Path)
    ap.add_argument("--graphs", default=None, help="comma-separated (default: the teacher and every device)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    plan = load_plan(args.build / PLAN_COPY)
    graphs = args.graphs.split(",") if args.graphs else ["teacher", *(d.name for d in plan.devices)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.build, graphs, Path(tmp))
    print(
        "| graph | variant | nodes | after ORT's optimiser | CPU ms / request | max diff |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(f"| {r.graph} | {r.variant} | {r.nodes} | {r.nodes_optimised} | {r.cpu_ms:.3f} | {r.max_diff:.1e} |")
    if args.json:
        args.json.write_text(json.dumps({"build": str(args.build), "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
