"""The build report: OUT/report.json (for tools: `load_report`) and OUT/report.md (for people).

Accuracies are fractions in [0, 1]. `fused.accuracy` is measured on the shipped bundles through
ONNX Runtime; the torch numbers it must agree with are kept beside it. Latencies here are the
planner's predictions (eq. 3–6); `cofc bench` measures them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cofc.compiler.cluster.gain import CollaborationGain
from cofc.compiler.export.onnx import Parity
from cofc.compiler.models.torch_device import describe
from cofc.compiler.pipeline.context import Context
from cofc.compiler.pipeline.plots import plot_latency
from cofc.compiler.pipeline.stages import Built, Precisions, SearchSummary
from cofc.compiler.planning.objective import latency
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops
from cofc.errors import CofcError
from cofc.runtime._files import atomic_write, atomic_write_json
from cofc.runtime._typed_json import SchemaError, from_json, to_json

REPORT = "report.json"
PLAN_COPY = "plan.yaml"  # the plan the build was made from, paths absolute: the folder is self-contained


@dataclass(frozen=True)
class PlanInfo:
    name: str
    id: str
    source: str  # the plan file the build was started from


@dataclass(frozen=True)
class TeacherInfo:
    accuracy: float
    mflops: float
    spec: TransformerSpec
    predicted_ms: dict[str, float]  # alone on each device


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    central: bool
    spec: SubModelSpec
    mflops: float
    flops_share: float  # of the teacher's
    t1_ms: float  # predicted compute
    t2_ms: float  # predicted transfer
    accuracy: float  # alone, calibrated
    accuracy_uncalibrated: float  # alone, as cut
    precision: str  # what its backbone graph ships at: fp32 or int8
    accuracy_onnx: float | None  # alone, its bundle through ONNX Runtime (None in older reports)
    accuracy_onnx_fp32: float | None  # alone, its FP32 export, where some graph ships INT8


@dataclass(frozen=True)
class FusedInfo:
    accuracy: float  # the bundles through ONNX Runtime
    accuracy_fp32: float | None  # the FP32 exports through ONNX Runtime, where some graph ships INT8
    accuracy_torch: float
    accuracy_without_dropout: float
    predicted_ms: float  # eq. 3
    t3_ms: float
    missing_one: dict[str, float]  # device -> fused accuracy without it
    missing_one_without_dropout: dict[str, float]


@dataclass(frozen=True)
class Report:
    plan: PlanInfo
    teacher: TeacherInfo
    fused: FusedInfo
    average: float  # of the sub-models' logits
    vote: float
    devices: tuple[DeviceInfo, ...]
    search: SearchSummary
    export: tuple[Parity, ...]
    precision: Precisions
    test_samples: int
    stage_seconds: dict[str, float]  # how long each stage took when it ran
    torch_device: str  # where the stages' torch work ran: "cpu", or "cuda (<GPU name>)"


def make_report(ctx: Context, built: Built, seconds: dict[str, float]) -> Report:
    devices, base, found, acc, ort = ctx.devices, ctx.base, built.search, built.calibrate, built.evaluate
    teacher = built.teacher
    lat = latency(found.policy, devices, base, ctx.input_bytes)
    teacher_flops = flops(base.full(), base)
    names = [d.name for d in devices]
    return Report(
        plan=PlanInfo(ctx.plan.name, built.bundle.plan_id, str(ctx.plan.path.resolve())),
        teacher=TeacherInfo(
            teacher.accuracy, teacher_flops / 1e6, teacher.spec, {d.name: d.predict_ms(base.full()) for d in devices}
        ),
        fused=FusedInfo(
            ort.fused,
            ort.fused_fp32,
            acc.fused,
            acc.fused_without_dropout,
            lat.total,
            lat.t3,
            dict(zip(names, ort.missing, strict=True)),
            dict(zip(names, acc.missing_without_dropout, strict=True)),
        ),
        average=acc.average,
        vote=acc.vote,
        devices=tuple(
            DeviceInfo(
                d.name,
                d.central,
                s,
                flops(s, base) / 1e6,
                flops(s, base) / teacher_flops,
                t1,
                t2,
                a,
                u,
                built.quantize.of(d.name).precision,
                ort.alone[k],
                ort.alone_fp32[k] if ort.alone_fp32 is not None else None,
            )
            for k, (d, s, a, u, t1, t2) in enumerate(
                zip(devices, found.policy, acc.submodels, acc.submodels_uncalibrated, lat.t1, lat.t2, strict=True)
            )
        ),
        search=found,
        export=built.export.checks,
        precision=built.quantize,
        test_samples=ort.samples,
        stage_seconds=seconds,
        torch_device=describe(ctx.device),
    )


def write_report(out: Path, report: Report) -> None:
    atomic_write_json(out / REPORT, to_json(report))
    devices = report.devices
    plot_latency(
        out / "latency.png",
        [d.name for d in devices],
        [d.t1_ms for d in devices],
        [d.t2_ms for d in devices],
        report.fused.t3_ms,
        [report.teacher.predicted_ms[d.name] for d in devices],
    )
    write_markdown(out, report)


def write_markdown(out: Path, report: Report, gain: CollaborationGain | None = None) -> None:
    """OUT/report.md; with the collaboration gain once `cofc baseline` has measured it."""
    atomic_write(out / "report.md", markdown(report, gain).encode())


def load_report(build_dir: Path) -> Report:
    path = Path(build_dir) / REPORT
    if not path.is_file():
        raise CofcError(f"{build_dir} has no {REPORT}: run 'cofc build' first")
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        _upgrade(data)
    try:
        return from_json(Report, data)
    except SchemaError as exc:
        raise CofcError(f"{path}: {exc}: written by another version of cofc; rebuild with 'cofc build'") from None


def _upgrade(data: dict) -> None:
    """Reports of earlier builds, as this one reads them: a teacher spec without the fields added
    since has their defaults; before `cofc build --device` every one ran
    on the CPU; before the quantize stage every graph was FP32, and no one measured the sub-models
    alone through ONNX Runtime."""
    data.setdefault("torch_device", "cpu")
    spec = data.get("teacher", {}).get("spec") if isinstance(data.get("teacher"), dict) else None
    if isinstance(spec, dict):  # family facts added since (T5's mlp_up, Swin's stages): their defaults
        for f in dataclasses.fields(TransformerSpec):
            if f.name not in spec and f.default is not dataclasses.MISSING:
                spec[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    if "precision" in data:
        return
    names = [d["name"] for d in data["devices"]]
    planned = "FP32 graph (built before the quantize stage)"
    data["precision"] = {
        "requested": "unrecorded",
        "scheme": "",
        "graphs": [
            {"graph": g, "precision": "fp32", "measured": None, "reason": planned}
            for g in (*names, "aggregator", "teacher")
        ],
    }
    data["fused"].setdefault("accuracy_fp32", None)
    for d in data["devices"]:
        d.update(precision="fp32", accuracy_onnx=None, accuracy_onnx_fp32=None)


SEARCHES = {"debo": "DeBo", "uniform": "the uniform split", "random": "random search"}


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def markdown(r: Report, gain: CollaborationGain | None = None) -> str:
    lines = [
        f"# cofc build report: {r.plan.name} [{r.plan.id}]",
        "",
        f"Teacher: {pct(r.teacher.accuracy)} on {r.test_samples} test samples, "
        f"{r.teacher.mflops:.1f} MFLOPs per request.",
        "",
        f"## Chosen decomposition ({SEARCHES[r.search.shipped]})",
        "",
        "| device | layers | width | heads | MLP | FLOPs share | t1 ms | t2 ms | alone (uncalibrated → calibrated) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in r.devices:
        s = d.spec
        lines.append(
            f"| {d.name}{' (central)' if d.central else ''} | {s.layers} | {s.dim} | {list(s.heads)} | "
            f"{list(s.mlp)} | {d.flops_share:.0%} | {d.t1_ms:.2f} | {d.t2_ms:.3f} | "
            f"{pct(d.accuracy_uncalibrated)} → {pct(d.accuracy)} |"
        )
    f = r.fused
    lines += [
        "",
        "## Accuracy",
        "",
        "| model | accuracy |",
        "|---|---|",
        f"| teacher | {pct(r.teacher.accuracy)} |",
        f"| CoFormer fused (bundles through ONNX Runtime) | {pct(f.accuracy)} |",
        *(
            [f"| CoFormer fused (FP32 exports through ONNX Runtime) | {pct(f.accuracy_fp32)} |"]
            if f.accuracy_fp32
            else []
        ),
        f"| CoFormer fused (torch) | {pct(f.accuracy_torch)} |",
        f"| average of sub-model logits | {pct(r.average)} |",
        f"| majority vote | {pct(r.vote)} |",
    ]
    for name, v in f.missing_one.items():
        lines.append(
            f"| fused, {name} missing (feature-dropout aggregator / without) | {pct(v)} / "
            f"{pct(f.missing_one_without_dropout[name])} |"
        )
    lines += precision_lines(r)
    lines += [
        "",
        "## Predicted latency",
        "",
        f"CoFormer end to end: {f.predicted_ms:.2f} ms (aggregation t3 {f.t3_ms:.4f} ms).",
        "",
        "| device | teacher alone, ms | speed-up |",
        "|---|---|---|",
    ]
    for name, ms in r.teacher.predicted_ms.items():
        lines.append(f"| {name} | {ms:.2f} | {ms / f.predicted_ms:.2f}× |")
    if gain is not None:
        lines += ["", *gain_markdown(gain)]
    lines += [
        "",
        f"## Search ({r.search.evaluations} DeBo evaluations)",
        "",
        "Best Ψ = L_val + δ·T: " + ", ".join(f"{k} {v:.4f}" for k, v in r.search.best.items() if v is not None),
        "",
        "## Build time",
        "",
        ", ".join(f"{name} {s:.0f} s" for name, s in r.stage_seconds.items())
        + f" ({sum(r.stage_seconds.values()) / 60:.1f} min of stage time, torch on {r.torch_device})",
        "",
        "![search](search.png) ![latency](latency.png)",
        "",
    ]
    return "\n".join(lines)


def gain_markdown(g: CollaborationGain) -> list[str]:
    """The measured comparison with the single compressed model (`cofc baseline`)."""
    lines = [
        "## Collaboration gain (measured: `cofc bench`, `cofc baseline`)",
        "",
        f"On the same {g.requests} test inputs, CoFormer against one compressed sub-model of the same "
        "teacher on the fastest device alone, sized to CoFormer's measured median.",
        "",
        "| | accuracy | end to end, median |",
        "|---|---|---|",
        f"| CoFormer | {pct(g.coformer_accuracy)} | {g.coformer_ms:.3f} ms |",
        f"| single compressed model | {pct(g.single_accuracy)} | {g.single_ms:.3f} ms ({g.ms_ratio:.2f}× CoFormer's) |",
        f"| teacher alone | {pct(g.teacher_accuracy)} | {g.teacher_ms:.3f} ms |",
        "",
        f"Collaboration gain: **{g.points:+.2f} points** at {g.speedup_vs_teacher:.2f}× the teacher's speed.",
    ]
    if not g.equal_latency:
        lines.append("The medians differ by more than 5%: this is not a comparison at equal latency.")
    return lines


def precision_lines(r: Report) -> list[str]:
    """Each graph's precision, why, and each sub-model alone through ONNX Runtime (its bundle
    graph, and its FP32 export where some graph ships INT8)."""
    p = r.precision
    lines = ["", f"## Precision (plan: {p.requested}{'; ' + p.scheme if p.scheme else ''})", ""]
    lines += [f"- {g.reason}" for g in p.graphs]
    measured = [(g, g.measured) for g in p.graphs if g.measured is not None]
    if measured:
        lines += ["", "| graph | FP32 acc. (val) | INT8 acc. (val) | FP32 ms | INT8 ms |", "|---|---|---|---|---|"]
        lines += [
            f"| {g.graph} | {pct(m.fp32_accuracy)} | {pct(m.int8_accuracy)} | {m.fp32_ms:.3f} | {m.int8_ms:.3f} |"
            for g, m in measured
        ]
    lines += ["", "| device | graph | alone, bundle (ONNX Runtime) | alone, FP32 export |", "|---|---|---|---|"]
    for d in r.devices:
        bundle, fp32 = (("-" if v is None else pct(v)) for v in (d.accuracy_onnx, d.accuracy_onnx_fp32))
        lines.append(f"| {d.name} | {d.precision} | {bundle} | {fp32} |")
    return lines
