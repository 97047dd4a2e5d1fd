"""Which precision each graph ships at, and why: the plan asks for one, each graph earns it.

A graph keeps its INT8 twin only if both hold, measured by the build on this host:
  accuracy  the drop is at most the plan's `export.max_drop`. A device's backbone is judged by its
            sub-model alone (its features only, through the FP32 aggregator, the others masked
            as missing): that drop belongs to that device and to no other, where a fused drop is
            hidden by the devices that kept FP32 and cannot say which graph caused it. The
            aggregator is judged by the fused accuracy, since it only ever runs fused.
  speed     its median single-request time is at least MIN_SPEEDUP times faster than the FP32
            graph's. INT8 matrix multiplies pay with VNNI or wide layers; on a narrow sub-model
            the quantize/dequantize work can outweigh the smaller multiplies (slower without VNNI,
            a few percent either way with it), and a graph no faster than the timings' spread is
            no gain for any device, only a risk to its accuracy.
A device whose latency table was measured on TensorRT gets its FP32 graph and no ONNX Runtime twin:
TensorRT builds its own INT8 engine from that graph and the stored calibration inputs (an ONNX
Runtime twin, with unsigned activations where they are faster on x86, is not a graph TensorRT's
explicit quantization reads). The central device's backend decides the aggregator.
FP16 changes what ONNX Runtime runs only with a GPU provider; on a CPU-only host it is refused by
one line (bundles stay FP32 graphs; TensorRT devices still build FP16 engines at first run).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cofc.errors import CofcError

FP32, INT8 = "fp32", "int8"
MAX_DROP = 0.01  # default `export.max_drop`: one point of accuracy
# INT8 must be this much faster: the quick build's mid sub-model, timed in turns with its FP32
# graph on a quiet VNNI host, came out 1.00x in the build and 0.79-0.84x in three later runs.
MIN_SPEEDUP = 1.05
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")


@dataclass(frozen=True)
class Measured:
    """One graph at both precisions on this host: accuracy (fraction) and median ms per request."""

    fp32_accuracy: float
    int8_accuracy: float
    fp32_ms: float
    int8_ms: float


@dataclass(frozen=True)
class GraphPrecision:
    """What one graph ships at, with the measurements behind it and one line saying why."""

    graph: str  # a device's name, "aggregator" or "teacher"
    precision: str  # what ships: fp32 or int8
    measured: Measured | None  # None when the plan asked for FP32
    reason: str


def choose(graph: str, m: Measured, max_drop: float, judged_by: str) -> GraphPrecision:
    """INT8 if it loses at most `max_drop` of `judged_by` accuracy and is MIN_SPEEDUP times faster;
    else FP32 and why."""
    drop = m.fp32_accuracy - m.int8_accuracy
    if drop > max_drop:
        why = f"INT8 loses {100 * drop:.2f} points ({judged_by}), more than export.max_drop {100 * max_drop:.2f}"
        return GraphPrecision(graph, FP32, m, f"{graph} keeps FP32: {why}")
    if m.int8_ms * MIN_SPEEDUP > m.fp32_ms:
        why = f"INT8 is not {MIN_SPEEDUP:g}x faster on this host ({m.int8_ms:.3f} ms vs {m.fp32_ms:.3f} ms FP32)"
        return GraphPrecision(graph, FP32, m, f"{graph} keeps FP32: {why}")
    return GraphPrecision(
        graph,
        INT8,
        m,
        f"{graph} runs INT8: {m.fp32_ms / m.int8_ms:.2f}x faster on this host, "
        f"{100 * drop:+.2f} points lost ({judged_by})",
    )


def for_tensorrt(graph: str) -> GraphPrecision:
    """A graph that runs on TensorRT: FP32, from which TensorRT builds its INT8 engine itself, so
    that its ONNX Runtime twin is neither made nor measured."""
    return GraphPrecision(
        graph,
        FP32,
        None,
        f"{graph} ships FP32 for TensorRT (its latency table's backend), which builds its INT8 engine "
        "from it and the stored calibration inputs",
    )


def fp16_refusal(providers: list[str]) -> str | None:
    """Why FP16 cannot change what ONNX Runtime runs here, if it cannot (no GPU provider)."""
    if any(p in providers for p in GPU_PROVIDERS):
        return None
    return (
        "fp16 changes nothing under ONNX Runtime on this host: it has no GPU provider "
        f"({', '.join(providers)}), and its CPU kernels run FP16 slower than FP32"
    )


def check_ort_precision(precision: str) -> None:
    """`cofc profile --backend onnxruntime`: refuse a precision ONNX Runtime cannot run here."""
    import onnxruntime

    if precision == "fp16" and (why := fp16_refusal(onnxruntime.get_available_providers())):
        raise CofcError(why + "; profile fp32 or int8, or use --backend tensorrt on a GPU")


# -- measuring on this host ----------------------------------------------------------------------
SPEED_ROUNDS = 3  # FP32 and INT8 timed in turns, so that a busy moment on the host hits both


def outputs(graph: Path, feeds: Mapping[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """The graph's one output on every sample of `feeds`, `batch` at a time (one thread)."""
    from cofc.runtime.backends import open_backend

    n = len(next(iter(feeds.values())))
    with open_backend("onnxruntime", graph, threads=1) as engine:
        names = [s.name for s in engine.inputs]
        parts = [
            next(iter(engine.run({k: feeds[k][i : i + batch] for k in names}).values())) for i in range(0, n, batch)
        ]
    return np.concatenate(parts)


def speeds(graphs: Sequence[Path], feeds: Mapping[str, np.ndarray]) -> list[float]:
    """Median ms of one request (the first sample of `feeds`) through each graph, one thread,
    the graphs timed in turns SPEED_ROUNDS times so that a busy moment on the host hits them all."""
    from cofc.compiler.latency.profile import time_calls
    from cofc.runtime.backends import open_backend

    one = {k: np.ascontiguousarray(v[:1]) for k, v in feeds.items()}
    with contextlib.ExitStack() as stack:
        engines = [stack.enter_context(open_backend("onnxruntime", g, threads=1)) for g in graphs]
        feeds_of = [{s.name: one[s.name] for s in e.inputs} for e in engines]
        times: list[list[float]] = [[] for _ in engines]
        for _ in range(SPEED_ROUNDS):
            for e, f, t in zip(engines, feeds_of, times, strict=True):
                t.append(time_calls(functools.partial(e.run, f))["ms"])
    return [statistics.median(t) for t in times]


@dataclass(frozen=True)
class Graphs:
    """The FP32 graphs of a build (onnx/), each with its INT8 twin at `int8_path`."""

    devices: dict[str, Path]  # in the aggregator's order
    aggregator: Path
    teacher: Path


def judge(
    graphs: Graphs,
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    max_drop: float,
    tensorrt: Set[str] = frozenset(),
) -> tuple[GraphPrecision, ...]:
    """Each device's backbone, the aggregator and the teacher, FP32 or INT8 (module docstring);
    the graphs named in `tensorrt` (devices, "aggregator") ship FP32 and have no INT8 twin."""
    from cofc.compiler.export.onnx import FEATURES, MASK
    from cofc.compiler.export.quantize import int8_path

    def accuracy(logits: np.ndarray) -> float:
        return float((logits.argmax(-1) == labels).mean())

    def fused(aggregator: Path, features: list[np.ndarray], mask: np.ndarray) -> float:
        return accuracy(outputs(aggregator, {FEATURES: np.concatenate(features, 1), MASK: mask}))

    names, n = list(graphs.devices), len(labels)
    fp32 = [outputs(g, inputs) for g in graphs.devices.values()]
    shipped, chosen = list(fp32), []
    for k, (name, graph) in enumerate(graphs.devices.items()):
        if name in tensorrt:
            chosen.append(for_tensorrt(name))
            continue
        alone = np.zeros((n, len(names)), np.float32)
        alone[:, k] = 1
        int8 = outputs(int8_path(graph), inputs)
        m = Measured(
            fused(graphs.aggregator, fp32, alone),
            fused(graphs.aggregator, [int8 if j == k else f for j, f in enumerate(fp32)], alone),
            *speeds([graph, int8_path(graph)], inputs),
        )
        chosen.append(choose(name, m, max_drop, "its sub-model alone, validation split"))
        if chosen[-1].precision == INT8:
            shipped[k] = int8  # the aggregator is judged on what ships
    everyone = np.ones((n, len(names)), np.float32)
    if "aggregator" in tensorrt:
        chosen.append(for_tensorrt("aggregator"))
    else:
        m = Measured(
            fused(graphs.aggregator, shipped, everyone),
            fused(int8_path(graphs.aggregator), shipped, everyone),
            *speeds(
                [graphs.aggregator, int8_path(graphs.aggregator)],
                {FEATURES: np.concatenate(shipped, 1), MASK: everyone},
            ),
        )
        chosen.append(choose("aggregator", m, max_drop, "fused, validation split"))
    m = Measured(
        accuracy(outputs(graphs.teacher, inputs)),
        accuracy(outputs(int8_path(graphs.teacher), inputs)),
        *speeds([graphs.teacher, int8_path(graphs.teacher)], inputs),
    )
    chosen.append(choose("teacher", m, max_drop, "the teacher alone, validation split"))
    return tuple(chosen)
