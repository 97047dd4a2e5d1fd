"""`cofc bench BUILD_DIR`: the built plan as a real cluster of processes on this machine.

Starts the central device and one worker per device (`cofc run`, each its own process), streams
N real test inputs one at a time, and reports: measured end-to-end latency (median, p90), the
per-phase breakdown (t1 per device, t2, t3) against the evaluator's prediction, the runtime's own
overhead (end to end vs max_n(t1_n + t2_n) + t3 of the same request's measured phases), the
accuracy of the answers, and the teacher's latency on the fastest device through the same
backend, at the precision the build chose for the teacher (its INT8 graph in an INT8 build where
that pays, with the FP32 time beside it). With `emulate`, devices get their plan's link rates and the CPU shares their latency
tables were measured under (compiler/emulate.py). With `stream`, the same inputs are then sent as
one pipelined stream (`window` in flight) and the answers per second are set against what the
slowest stage allows, 1 / max(per-device t1+t2 medians, t3 median), so a user can size a
deployment: a ratio near 1 means the runtime keeps the slowest stage busy.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cofc.compiler.cluster.bench_result import BenchResult, Phase, Spread, StreamRate, TeacherTiming
from cofc.compiler.cluster.emulate import EmulatedDevice, Emulation, EmulationUnavailable
from cofc.compiler.export.precision import FP32, INT8
from cofc.compiler.export.quantize import int8_path
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY, load_report
from cofc.compiler.plan import load_plan
from cofc.errors import CofcError
from cofc.runtime.backends import open_backend
from cofc.runtime.bundle import load_bundle
from cofc.runtime.cgroup import CpuLimit, held_to
from cofc.runtime.client import Answer, Client
from cofc.runtime.preprocess import Preprocessor

COFC = [sys.executable, "-m", "cofc.cli"]
JOIN_TIMEOUT_S = 30.0


def table_cpu_limit(profile: Path) -> CpuLimit:
    """The CPU limit a device's latency table was measured under (a full core when none)."""
    return CpuLimit.of_table(json.loads(profile.read_text())["provenance"]) or CpuLimit(1.0)


def bench(
    build_dir: Path, requests: int = 200, emulate: bool = False, warmup: int = 10, stream: bool = False, window: int = 8
) -> BenchResult:
    build_dir = Path(build_dir)
    report = load_report(build_dir)
    plan = load_plan(build_dir / PLAN_COPY)
    bundles = {d.name: load_bundle(build_dir / "bundle" / d.name) for d in plan.devices}
    central = bundles[plan.central.name]
    prep = Preprocessor.for_bundle(central)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(requests, seed=1)
    inputs = [prep.pack(test.inputs[i : i + 1]) for i in range(len(test))]
    limits = {d.name: table_cpu_limit(d.profile) for d in plan.devices}
    links = {d.name: d.link_mbps for d in plan.devices}
    note = None
    with contextlib.ExitStack() as stack:
        emulation = None
        if emulate:
            try:
                emulation = stack.enter_context(
                    Emulation(
                        [
                            EmulatedDevice(d.name, limits[d.name], None if d.central else d.link_mbps)
                            for d in plan.devices
                        ]
                    )
                )
            except EmulationUnavailable as exc:
                note = f"emulation refused, ran unshaped: {exc}"
                print(f"cofc: warning: {note}", file=sys.stderr)
        endpoint = central.manifest.central.endpoint.on(emulation.addr[central.device] if emulation else "127.0.0.1")
        procs = []
        for name, bundle in bundles.items():
            role = ["--bind" if name == central.device else "--connect", str(endpoint)]
            argv = [*COFC, "run", "--bundle", str(bundle.path), *role]
            if emulation and limits[name].pace:
                argv += ["--cpu-share", str(limits[name].pace)]
                if name != central.device:  # one host, one clock: pace from central's send time
                    argv += ["--emulated-link-mbps", str(links[name])]
            quiet = subprocess.DEVNULL
            procs.append(
                emulation.spawn(name, argv, stdout=quiet, stderr=quiet)
                if emulation
                else subprocess.Popen(argv, stdout=quiet, stderr=quiet)
            )
            if not emulation:
                stack.callback(procs[-1].kill)
        client = stack.enter_context(Client.for_bundle(central, endpoint=endpoint))
        client.wait_until_complete(inputs[0], JOIN_TIMEOUT_S)
        answers: list[Answer] = []
        client_ms: list[float] = []
        answer_classes: list[int] = []
        for i, arrays in enumerate([*inputs[:warmup], *inputs]):  # the first few again, to warm up
            start = time.perf_counter()
            answer = client.infer(arrays, timeout_s=30)
            if answer is None or answer.error or answer.logits is None:
                raise CofcError(f"request {i} failed: {answer.error if answer else 'no answer'}")
            if i >= warmup:
                client_ms.append((time.perf_counter() - start) * 1e3)
                answers.append(answer)
                answer_classes.append(int(answer.logits[0].argmax()))
        streamed = _stream(client, inputs, window) if stream else None
    labels = test.labels
    correct = [int(k == y) for k, y in zip(answer_classes, labels, strict=True)]
    names = [d.name for d in plan.devices]
    e2e = [a.timings["end_to_end_ms"] for a in answers]
    critical = [max(a.timings["t1_ms"][n] + a.timings["t2_ms"][n] for n in names) + a.timings["t3_ms"] for a in answers]
    overhead = [e - c for e, c in zip(e2e, critical, strict=True)]
    fastest = max(plan.devices, key=lambda d: limits[d.name].share)
    graph_inputs = [prep(test.inputs[i : i + 1]) for i in range(len(test))]
    precision = report.precision.of("teacher").precision
    teacher = _teacher(build_dir, precision, graph_inputs, limits[fastest.name] if emulate else None)
    predicted = {d.name: d for d in report.devices}
    phases = {
        n: Phase(
            t1_ms=statistics.median(a.timings["t1_ms"][n] for a in answers),
            t2_ms=statistics.median(a.timings["t2_ms"][n] for a in answers),
            predicted_t1_ms=predicted[n].t1_ms,
            predicted_t2_ms=predicted[n].t2_ms,
            **limits[n].provenance(),
            nice=emulation.nice[n] if emulation else None,
            link_mbps=None if d.central else d.link_mbps,
        )
        for n, d in zip(names, plan.devices, strict=True)
    }
    t3_ms = statistics.median(a.timings["t3_ms"] for a in answers)
    end_to_end = _spread(e2e)
    result = BenchResult(
        requests=len(answers),
        emulated=bool(emulate and note is None),
        note=note,
        accuracy=sum(correct) / len(correct),
        degraded=sum(a.degraded for a in answers),
        end_to_end_ms=end_to_end,
        client_ms=_spread(client_ms),
        phases=phases,
        t3_ms=t3_ms,
        critical_path_ms=statistics.median(critical),
        overhead_ms=_spread(overhead),
        overhead_ratio=statistics.median(e / c for e, c in zip(e2e, critical, strict=True)),
        predicted_ms=report.fused.predicted_ms,
        teacher=TeacherTiming(
            fastest.name,
            teacher[precision],
            report.teacher.accuracy,
            precision,
            teacher.get(FP32) if precision != FP32 else None,
        ),
        speedup_vs_teacher=teacher[precision] / end_to_end.median,
        stream=_throughput(streamed, phases, t3_ms) if streamed is not None else None,
    )
    result.save(build_dir)
    return result


def _spread(values: list[float]) -> Spread:
    return Spread(statistics.median(values), float(np.percentile(values, 90)))


@dataclass(frozen=True)
class Streamed:
    window: int
    answers: int
    errors: int
    degraded: int
    seconds: float


def _stream(client: Client, inputs: list[dict], window: int) -> Streamed:
    """The inputs as one pipelined stream, timed from the first send to the last answer."""
    start = time.perf_counter()
    answers = list(client.stream(inputs, window=window))
    seconds = time.perf_counter() - start
    return Streamed(
        window, len(answers), sum(a.error is not None for a in answers), sum(a.degraded for a in answers), seconds
    )


def _throughput(s: Streamed, phases: dict[str, Phase], t3_ms: float) -> StreamRate:
    """Answers per second against 1 / (slowest stage): each device's t1+t2 and the fusion t3 are
    stages that can overlap across requests, so the slowest one bounds the rate."""
    stages = {n: p.t1_ms + p.t2_ms for n, p in phases.items()}
    stages["t3 (fuse)"] = t3_ms
    slowest = max(stages, key=stages.__getitem__)
    rate, bound = s.answers / s.seconds, 1e3 / stages[slowest]
    return StreamRate(
        s.window,
        s.answers,
        s.errors,
        s.degraded,
        s.seconds,
        answers_per_s=rate,
        slowest_stage=slowest,
        slowest_stage_ms=stages[slowest],
        bound_per_s=bound,
        ratio=rate / bound,
    )


def _teacher(build_dir: Path, precision: str, inputs: list[dict], cpu: CpuLimit | None) -> dict[str, float]:
    """The teacher's median ms at `precision` and, when that is INT8, at FP32 too."""
    graph = build_dir / "onnx" / "teacher.onnx"
    graphs = {FP32: graph} | ({INT8: int8_path(graph)} if precision == INT8 else {})
    return {p: _teacher_ms(g, inputs, cpu) for p, g in graphs.items()}


def _teacher_ms(path: Path, inputs: list[dict], cpu: CpuLimit | None) -> float:
    """The teacher alone on the fastest device, through the same backend, one request at a time."""
    with (
        open_backend("onnxruntime", path, threads=1, cpu_share=None if cpu is None else cpu.pace) as engine,
        held_to(cpu),
    ):
        for arrays in inputs[:10]:
            engine.run(arrays)
        times = []
        for arrays in inputs:
            start = time.perf_counter()
            engine.run(arrays)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def format_table(r: BenchResult) -> str:
    lines = [
        f"{r.requests} requests ({'emulated cluster' if r.emulated else 'loopback, unshaped'}); "
        f"accuracy {r.accuracy:.4f}, {r.degraded} degraded",
        f"{'device':10s} {'cpu':>5s} {'Mb/s':>6s} {'t1 ms':>8s} {'pred t1':>8s} {'t1/pred':>7s} "
        f"{'t2 ms':>8s} {'pred t2':>8s}",
    ]
    for name, p in r.phases.items():
        link = "-" if p.link_mbps is None else f"{p.link_mbps:.1f}"
        lines.append(
            f"{name:10s} {p.cpu_share:5.2f} {link:>6s} {p.t1_ms:8.3f} {p.predicted_t1_ms:8.3f} "
            f"{p.t1_over_predicted:7.2f} {p.t2_ms:8.3f} {p.predicted_t2_ms:8.3f}"
        )
    e = r.end_to_end_ms
    lines += [
        f"t3 (fuse) {r.t3_ms:.3f} ms; end to end median {e.median:.3f} ms, p90 {e.p90:.3f} ms "
        f"(predicted {r.predicted_ms:.3f} ms; client-side median {r.client_ms.median:.3f} ms)",
        f"runtime overhead: end to end / (max(t1+t2)+t3) = {r.overhead_ratio:.3f}, "
        f"{r.overhead_ms.median:.3f} ms median",
        f"teacher alone on {r.teacher.device} ({r.teacher.precision.upper()}): {r.teacher.median_ms:.3f} ms -> "
        f"CoFormer speed-up {r.speedup_vs_teacher:.2f}x",
    ]
    if r.teacher.fp32_ms is not None:
        lines.append(
            f"teacher alone at FP32: {r.teacher.fp32_ms:.3f} ms "
            f"(CoFormer speed-up against it {r.teacher.fp32_ms / e.median:.2f}x)"
        )
    if (s := r.stream) is not None:
        lines.append(
            f"stream of {s.answers} (window {s.window}): {s.answers_per_s:.1f} answers/s; "
            f"slowest stage {s.slowest_stage} {s.slowest_stage_ms:.3f} ms allows "
            f"{s.bound_per_s:.1f}/s -> ratio {s.ratio:.2f} ({s.degraded} degraded, "
            f"{s.errors} errors)"
        )
    if r.note:
        lines.append(f"note: {r.note}")
    return "\n".join(lines)
