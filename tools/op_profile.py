"""Where one request's time goes, by operator type: ONNX Runtime's own profiler on a build's graphs,
each beside its INT8 twin where the build made one (issue 35: why INT8 pays or not on a sub-model).

  python tools/op_profile.py BUILD [--graphs fast,mid,slow,teacher] [--runs 300] [--top 10]

For each graph, BUILD/onnx/<graph>.onnx and, if present, <graph>.int8.onnx run one request at a
time (batch 1, the first stored calibration input, one thread) RUNS times with profiling on; the
table gives the microseconds per request each operator type takes (summed over its nodes, as
optimised by ONNX Runtime), how many such nodes a request runs, and the total of all kernels.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cofc.compiler.export.quantize import int8_path, stored_calibration


def kernel_us(graph: Path, feeds: dict[str, np.ndarray], runs: int, tmp: Path) -> tuple[Counter, Counter]:
    """Microseconds per request by operator type, and nodes per request by operator type."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / graph.stem)
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    one = {i.name: np.ascontiguousarray(feeds[i.name][:1]) for i in session.get_inputs()}
    for _ in range(runs):
        session.run(None, one)
    events = json.loads(Path(session.end_profiling()).read_text())
    us, nodes = Counter(), Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            us[e["args"]["op_name"]] += e["dur"] / runs
            nodes[e["args"]["op_name"]] += 1 / runs
    return us, nodes


def table(name: str, columns: dict[str, tuple[Counter, Counter]], top: int) -> str:
    """One markdown table: the `top` operator types by their largest time in any column."""
    ops = sorted(
        {op for us, _ in columns.values() for op in us}, key=lambda op: -max(c[0][op] for c in columns.values())
    )
    head = " | ".join(f"{c} µs | {c} nodes" for c in columns)
    lines = [f"**{name}**", "", f"| operator | {head} |", "|---|" + "---|---|" * len(columns)]
    for op in ops[:top]:
        lines.append(
            f"| {op} | " + " | ".join(f"{us[op]:.0f} | {nodes[op]:.0f}" for us, nodes in columns.values()) + " |"
        )
    total = " | ".join(f"{sum(us.values()):.0f} | {sum(nodes.values()):.0f}" for us, nodes in columns.values())
    lines.append(f"| all kernels | {total} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path)
    parser.add_argument("--graphs", default="fast,mid,slow,teacher")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    onnx_dir = args.build / "onnx"
    graphs = args.graphs.split(",")
    feeds = stored_calibration(onnx_dir / f"{graphs[0]}.onnx")  # every backbone reads the same inputs
    with tempfile.TemporaryDirectory() as tmp:
        for g in graphs:
            fp32 = onnx_dir / f"{g}.onnx"
            variants = {"FP32": fp32} | ({"INT8": int8_path(fp32)} if int8_path(fp32).is_file() else {})
            columns = {v: kernel_us(path, feeds, args.runs, Path(tmp)) for v, path in variants.items()}
            print(table(g, columns, args.top), end="\n\n")


if __name__ == "__main__":
    main()
