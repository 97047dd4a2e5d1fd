"""`cofc profile`: time real engines over the paper's model pool on this machine (appendix A).

Each spec in the pool is built as a sub-model of the teacher's family and input size (random
weights: latency does not depend on their values), exported to ONNX exactly as a device would
run it (at `--precision int8` under ONNX Runtime, quantized as `cofc build` quantizes it:
compiler/export/quantize.py), loaded through the runtime's backend interface, warmed up, and timed. The table is
rewritten atomically after every row, so a killed run keeps what it finished and resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cofc.compiler.export.onnx import PooledBackbone, export_backbone
from cofc.compiler.export.precision import check_ort_precision
from cofc.compiler.export.quantize import quantize_graph
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops
from cofc.errors import CofcError
from cofc.runtime._files import atomic_write_json
from cofc.runtime.backends import open_backend
from cofc.runtime.cgroup import CpuLimit, held_to

FORMAT = "cofc-profile/1"
WARMUP_S, MIN_S, MIN_RUNS, MAX_RUNS = 0.1, 0.3, 60, 3000


def model_pool(base: TransformerSpec, count: int, seed: int = 0, max_flops: float | None = None) -> list[SubModelSpec]:
    """`count` distinct sub-model specs spread over the teacher's range: layers 1..L, width in
    head-size steps, heads 1..h, MLP width in D/16 steps. One in four has ragged per-layer heads
    and widths, so the predictor sees non-integer h̄ and D̄. `max_flops` keeps the pool to the
    specs a device's budget admits: the predictor's error is relative to where it is used."""
    rng = np.random.default_rng(seed)
    unit = max(1, base.mlp // 16)
    widths = np.arange(base.head_dim, base.dim + 1, base.head_dim)
    specs: dict[SubModelSpec, None] = {}
    for _ in range(count * 50):
        if len(specs) == count:
            break
        # A hierarchical teacher's (Swin's) sub-models keep every layer.
        layers = base.layers if base.stages else int(rng.integers(1, base.layers + 1))
        ragged = rng.random() < 0.25
        per_layer = layers if ragged else 1
        heads = rng.integers(1, base.heads + 1, size=per_layer)
        mlp = rng.integers(1, base.mlp // unit + 1, size=per_layer) * unit
        spec = SubModelSpec(
            layers, int(rng.choice(widths)), tuple(np.resize(heads, layers)), tuple(np.resize(mlp, layers))
        )
        if max_flops is None or flops(spec, base) <= max_flops:
            specs.setdefault(spec)
    return list(specs)


def time_calls(
    call: Callable[[], Any],
    warmup_s: float = WARMUP_S,
    min_s: float = MIN_S,
    min_runs: int = MIN_RUNS,
    max_runs: int = MAX_RUNS,
) -> dict[str, float]:
    """Median latency in ms of single calls, with the 10th/90th percentiles as the spread.

    Sub-millisecond calls on a shared machine are noisy, so both the warm-up and the timed part
    run for a time budget (at least `min_runs` calls and `min_s` seconds), not a fixed count."""
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        call()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - start < min_s):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    q10, q90 = np.percentile(samples, [10, 90])
    return {"ms": statistics.median(samples), "p10": float(q10), "p90": float(q90), "runs": len(samples)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_model() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def provenance(
    device: str,
    backend: str,
    backend_version: str,
    precision: str,
    threads: int,
    teacher: Teacher,
    base: TransformerSpec,
    input_shapes: dict[str, list[int]],
    cpu: CpuLimit | None = None,
    max_flops: float | None = None,
) -> dict[str, Any]:
    return {
        "device": device,
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "gpu": _gpu_model(),
        "backend": backend,
        "backend_version": backend_version,
        "precision": precision,
        "threads": threads,
        **(cpu.provenance() if cpu else CpuLimit.UNLIMITED),
        "batch": 1,
        "inputs": input_shapes,
        "family": teacher.family,
        "max_flops": max_flops,
        "teacher": base.to_dict(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "estimated": False,
        "method": f"median of single-request runs for at least {MIN_S} s and {MIN_RUNS} runs "
        f"(at most {MAX_RUNS}) after {WARMUP_S} s of warm-up",
    }


def write_table(path: Path, table: dict[str, Any]) -> None:
    atomic_write_json(path, table)


def _resumable(out: Path, prov: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of an earlier run of the same profile (same device, backend, teacher and inputs)."""
    if not out.exists():
        return []
    try:
        old = json.loads(out.read_text())
    except ValueError:
        raise CofcError(f"{out} exists and is not a latency table; move it away or pick another --out") from None
    keys = (
        "device",
        "backend",
        "backend_version",
        "precision",
        "threads",
        *CpuLimit.UNLIMITED,
        "inputs",
        "teacher",
        "max_flops",
    )
    if old.get("format") != FORMAT or any(old["provenance"].get(k) != prov[k] for k in keys):
        raise CofcError(
            f"{out} holds a table of another device, backend or teacher; move it away or pick another --out"
        )
    return old["rows"]


def torch_cuda_call(module: torch.nn.Module, example: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One request through torch on the GPU, synchronised (a GPU table where TensorRT is absent)."""
    module = module.cuda().eval()
    inputs = [v.cuda() for v in example.values()]

    @torch.no_grad()
    def call() -> None:
        module(*inputs)
        torch.cuda.synchronize()

    return call


def run_profile(
    teacher: Teacher,
    out: Path,
    device: str,
    backend: str = "onnxruntime",
    threads: int = 1,
    precision: str = "fp32",
    count: int = 120,
    seed: int = 0,
    cpu: CpuLimit | None = None,
    opset: int = 17,
    max_flops: float | None = None,
) -> dict[str, Any]:
    """Measure `count` pool specs (resuming a killed run) and return the finished table, under
    `cpu`: each run paced, or this process held to its cgroup quota."""
    torch.set_num_threads(max(1, threads))
    if backend == "onnxruntime":
        check_ort_precision(precision)
    elif backend == "torch-cuda" and precision != "fp32":
        raise CofcError(f"backend torch-cuda times fp32 only; {precision} needs onnxruntime or tensorrt")
    adapter = get_adapter(teacher.family)
    base = adapter.spec(teacher.model)
    example = adapter.preprocess(teacher.record, _example_raw(teacher))
    feeds = {k: v.numpy() for k, v in example.items()}
    version = _backend_version(backend)
    prov = provenance(
        device,
        backend,
        version,
        precision,
        threads,
        teacher,
        base,
        {k: list(v.shape) for k, v in feeds.items()},
        cpu,
        max_flops,
    )
    rows = _resumable(out, prov)
    done = {json.dumps(r["spec"], sort_keys=True) for r in rows}
    todo = [s for s in model_pool(base, count, seed, max_flops) if json.dumps(s.to_dict(), sort_keys=True) not in done]
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp, held_to(cpu):
        for spec in tqdm(todo, desc=f"profiling {device} ({backend})", initial=len(rows), total=len(rows) + len(todo)):
            model = adapter.build_submodel(teacher.model, spec).eval()
            if backend == "torch-cuda":
                timing = time_calls(torch_cuda_call(PooledBackbone(adapter, model, list(example)), example))
            else:
                onnx_path = export_backbone(adapter, model, example, Path(tmp) / "spec.onnx", opset)
                if backend == "onnxruntime" and precision == "int8":  # ranges from the example: timing only
                    onnx_path = quantize_graph(onnx_path, feeds)
                with open_backend(
                    backend,
                    onnx_path,
                    threads=threads,
                    precision=precision,
                    cpu_share=None if cpu is None else cpu.pace,
                ) as engine:
                    timing = time_calls(lambda: engine.run(feeds))
            rows.append({"spec": spec.to_dict(), **timing, "flops": flops(spec, base)})
            write_table(out, {"format": FORMAT, "provenance": prov, "rows": rows})
    table = {"format": FORMAT, "provenance": prov, "rows": rows}
    write_table(out, table)
    return table


def _backend_version(backend: str) -> str:
    if backend == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if backend == "tensorrt":
        import tensorrt

        return tensorrt.__version__
    if backend == "torch-cuda":
        if not torch.cuda.is_available():
            raise CofcError("backend torch-cuda needs a CUDA GPU; none is visible here")
        return f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    raise CofcError(f"unknown backend {backend!r}")


def _example_raw(teacher: Teacher):
    """One raw input of the teacher's kind, at the size it is planned for."""
    image = teacher.expects.image
    if image is not None:
        return np.random.default_rng(0).integers(0, 256, size=(1, *image.shape), dtype=np.uint8)
    text = "a sentence long enough to fill the sequence " * 40
    return [(text, text)] if teacher.record["preprocess"].get("pair_column") else [text]
