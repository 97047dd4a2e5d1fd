"""The stages of `cofc build`, one function each, in order:

    teacher    the teacher's accuracy on the test split
    importance rank heads, neurons, channels and layers on calibration data (appendix B1)
    search     DeBo, random and uniform search under C1–C6 (§III-C1; the planner is pure)
    calibrate  cut the chosen policy, boost, train the aggregator, fine-tune jointly (§III-C2)
    export     ONNX per device and for the aggregator, checked against torch (fails past tolerance)
    quantize   INT8 plans: each graph's INT8 twin, kept where it is accurate and faster here
    bundle     one folder per device with manifest, hashes and CURVE keys
    engines    TensorRT engines into each bundle's engines/, only where this host has TensorRT
    evaluate   the bundles' fused pipeline through ONNX Runtime on the test split

Each stage declares what it reads (`cache.Reads`); the results of the upstream stages it names
arrive as its parameters, in that order. Results are typed and kept in OUT/stages/.
The torch work of teacher, importance, search and calibrate runs on the build's device
(`Context.device`); export and what follows run on the CPU, where those stages leave every module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import torch
from tqdm import tqdm

from cofc.compiler.calibration.accuracy import AccuracyReport, accuracy_report
from cofc.compiler.calibration.calibrate import Calibrated, CalibrationConfig, FusedModel, calibrate, random_mask
from cofc.compiler.export.bundle import plan_id, write_bundles
from cofc.compiler.export.onnx import (
    FEATURES,
    INT8_SAMPLES,
    LOGITS,
    MASK,
    Parity,
    PooledBackbone,
    export_aggregator,
    export_backbone,
    export_teacher,
    parity,
    write_int8_calibration,
)
from cofc.compiler.export.precision import FP32, GraphPrecision, Graphs, judge
from cofc.compiler.export.quantize import SCHEME, quantize_graph, stored_calibration
from cofc.compiler.models.batches import batched
from cofc.compiler.models.decompose import decompose
from cofc.compiler.models.fusion import Aggregator
from cofc.compiler.models.metrics import accuracy
from cofc.compiler.pipeline.cache import Reads
from cofc.compiler.pipeline.context import Context, log
from cofc.compiler.planning.fill import fill
from cofc.compiler.planning.floor import fastest_answer
from cofc.compiler.planning.objective import Evaluator, Policy, device_ms
from cofc.compiler.planning.search import SearchResult, SearchSpace, debo, random_search, uniform_search
from cofc.compiler.planning.slices import Importance
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec
from cofc.compiler.scoring.importance import rank_units, ranking_samples
from cofc.compiler.scoring.proxy import ValidationLoss
from cofc.errors import CofcError
from cofc.runtime.backends import available as available_backends

PARITY_TOLERANCE = 1e-3  # max abs difference of ONNX Runtime vs torch on features and logits
DATA = (
    "dataset.name",
    "dataset.image_folder",
    "dataset.text_file",
    "dataset.test_file",
    "dataset.text_column",
    "dataset.label_column",
    "dataset.pair_column",
    "dataset.held_out",
)  # where the samples come from
SPLITS = (*DATA, "dataset.calibration", "dataset.validation", "objective.seed")  # fix cal and val
TEST = (*DATA, "dataset.test")
PREPARE = "cofc.compiler.plan.prepare"  # how the splits are drawn


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., Any]
    reads: Reads
    outputs: tuple[str, ...]  # files and folders it writes under OUT; reused only while present

    @property
    def result_type(self) -> type:
        return get_type_hints(self.run)["return"]


STAGES: list[Stage] = []


def stage(name: str, reads: Reads, outputs: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    def register(run: Callable) -> Callable:
        STAGES.append(Stage(name, run, reads, outputs))
        return run

    return register


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherResult:
    spec: TransformerSpec
    accuracy: float


@dataclass(frozen=True)
class Evaluated:
    """One policy the search scored: L_val (eq. 7), T (eq. 3) and Ψ (eq. 8)."""

    policy: tuple[SubModelSpec, ...]
    loss: float
    latency_ms: float
    objective: float


@dataclass(frozen=True)
class SearchSummary:
    policy: tuple[SubModelSpec, ...]  # the decomposition that ships: the best of `shipped`
    shipped: str  # the search whose best ships: "debo" unless the plan's objective.ship says
    objective: float
    evaluations: int
    best: dict[str, float | None]  # best Ψ of each method (debo, random, uniform)
    history: dict[str, tuple[Evaluated, ...]]


@dataclass(frozen=True)
class ExportResult:
    checks: tuple[Parity, ...]


@dataclass(frozen=True)
class Precisions:
    """What each graph ships at (compiler/export/precision.py): the devices in plan order, then
    the aggregator and the teacher (whom `cofc bench` times at its own choice)."""

    requested: str  # the plan's export.precision
    scheme: str  # how INT8 twins are made, "" when none were
    graphs: tuple[GraphPrecision, ...]

    def of(self, graph: str) -> GraphPrecision:
        return next(g for g in self.graphs if g.graph == graph)


@dataclass(frozen=True)
class BundleResult:
    plan_id: str
    devices: tuple[str, ...]  # OUT/bundle/<device>, in plan order


@dataclass(frozen=True)
class EnginesResult:
    graphs: tuple[str, ...]  # relative to OUT


@dataclass(frozen=True)
class OnnxAccuracy:
    """The shipped bundles through ONNX Runtime on the test split; where some graph ships INT8,
    the same through the FP32 exports beside them (`*_fp32`, else None)."""

    fused: float
    missing: tuple[float, ...]  # fused with that device missing
    alone: tuple[float, ...]  # each device's sub-model alone: the others masked as missing
    samples: int
    fused_fp32: float | None
    alone_fp32: tuple[float, ...] | None


# -- the stages --------------------------------------------------------------------------------
@stage("teacher", Reads(plan=("teacher", *TEST), code=("cofc.compiler.models.metrics", PREPARE)))
def measure_teacher(ctx: Context) -> TeacherResult:
    return TeacherResult(ctx.base, accuracy(ctx.teacher, ctx.test, device=ctx.device, desc="teacher on the test split"))


@stage("importance", Reads(plan=("teacher", *SPLITS), code=("cofc.compiler.scoring.importance", PREPARE)))
def rank(ctx: Context) -> Importance:
    return rank_units(ctx.teacher, ranking_samples(ctx.cal, ctx.plan.objective.seed), device=ctx.device)


@stage(
    "search",
    Reads(
        plan=("teacher", *SPLITS, "devices", "objective", "calibration.feature"),
        stages=("importance",),
        code=(
            "cofc.compiler.scoring.proxy",
            "cofc.compiler.planning.search",
            "cofc.compiler.planning.fill",
            "cofc.compiler.pipeline.context",
            "cofc.compiler.pipeline.plots",
            PREPARE,
        ),
    ),
    outputs=("search.png",),
)
def search(ctx: Context, importance: Importance) -> SearchSummary:
    from cofc.compiler.pipeline.plots import plot_search

    o = ctx.plan.objective
    proxy = ValidationLoss(ctx.teacher, importance, ctx.val, ctx.plan.calibration.feature, ctx.device)
    evaluator = Evaluator(ctx.devices, ctx.base, proxy, o.delta, ctx.input_bytes, o.max_ms)
    space = SearchSpace(ctx.base, len(ctx.devices), o.min_layers)
    start: tuple[Policy, ...] = ()
    if o.max_ms is not None and (floor := fastest_answer(space, ctx.devices, ctx.input_bytes)) is not None:
        if o.max_ms < floor.total_ms:  # a deadline under the devices' floor: say so before searching for nothing
            raise ctx.plan.error(
                "objective.max_ms", f"{o.max_ms:g} ms is too soon: {floor}; raise max_ms, or use faster devices"
            )
        start = (floor.policy,)  # DeBo starts from it: random proposals seldom meet a deadline near it
    budget = o.initial + o.iterations
    with tqdm(total=2 * budget + len(start) + 1, desc="searching decompositions", leave=False) as bar:

        def tick(_: int) -> None:
            bar.update()

        results = {
            "debo": debo(space, evaluator, o.initial, o.iterations, o.seed, progress=tick, start=start),
            "random": random_search(space, evaluator, budget, o.seed, progress=tick),
            "uniform": uniform_search(space, evaluator),
        }
    if not results["debo"].history:
        if o.max_ms is not None:
            raise ctx.plan.error(
                "objective.max_ms",
                f"no decomposition satisfies C1–C6 and answers within "
                f"{o.max_ms:g} ms on these devices; raise max_ms, or use faster devices",
            )
        raise ctx.plan.error(
            "devices",
            "no decomposition satisfies C1–C6 for these devices; raise memory_mb or max_mflops, or use fewer devices",
        )
    if not results[o.ship].history:
        raise ctx.plan.error("objective.ship", f"the {o.ship} search found no feasible policy to ship")
    plot_search(results, ctx.out / "search.png")
    best = results[o.ship].best
    if o.fill:  # no device left idle: the members grown into the critical path, scored like the rest
        best = evaluator(fill(best.policy, ctx.devices, space, ctx.input_bytes))
    return SearchSummary(
        best.policy,
        o.ship,
        best.objective,
        len(results["debo"].history),
        {k: (r.best.objective if r.history else None) for k, r in results.items()},
        {k: _evaluated(r) for k, r in results.items()},
    )


def _evaluated(result: SearchResult) -> tuple[Evaluated, ...]:
    return tuple(Evaluated(e.policy, e.loss, e.latency.total, e.objective) for e in result.history)


@stage(
    "calibrate",
    Reads(
        plan=("teacher", *SPLITS, *TEST, "calibration"),
        stages=("importance", "search"),
        code=("cofc.compiler.calibration.calibrate", "cofc.compiler.calibration.accuracy", PREPARE),
    ),
    outputs=("calibrated.pt",),
)
def calibrate_policy(ctx: Context, importance: Importance, found: SearchSummary) -> AccuracyReport:
    train, fusion = ctx.prepared.calibration_sets()
    result = calibrate(
        ctx.teacher,
        found.policy,
        importance,
        train,
        CalibrationConfig.from_plan(ctx.plan.calibration, ctx.plan.objective.seed),
        fusion,
        ctx.device,
    )
    torch.save(
        {
            "submodels": [m.state_dict() for m in result.submodels],
            "aggregator": result.aggregator.state_dict(),
            "plain_aggregator": result.plain_aggregator.state_dict(),
        },
        ctx.out / "calibrated.pt",
    )
    uncalibrated = decompose(ctx.teacher.adapter, ctx.teacher.model, found.policy, importance)
    return accuracy_report(ctx.teacher, result, ctx.test, uncalibrated, ctx.device)


def load_calibrated(ctx: Context, policy: tuple[SubModelSpec, ...]) -> Calibrated:
    """The calibrate stage's modules, from OUT/calibrated.pt."""
    adapter, teacher = ctx.teacher.adapter, ctx.teacher.model
    state = torch.load(ctx.out / "calibrated.pt", weights_only=True)
    subs = [adapter.build_submodel(teacher, s) for s in policy]
    for m, sd in zip(subs, state["submodels"], strict=True):
        m.load_state_dict(sd)
        m.eval()
    aggs = []
    for key in ("aggregator", "plain_aggregator"):
        base = ctx.base
        agg = Aggregator([base.feature_dim(s.dim) for s in policy], base.feature_dim(base.dim), adapter.head(teacher))
        agg.load_state_dict(state[key])
        aggs.append(agg.eval())
    return Calibrated(policy, subs, aggs[0], aggs[1], ctx.plan.calibration.feature)


@stage(
    "export",
    Reads(
        plan=("teacher", *SPLITS, *TEST, "export", "calibration", "devices"),
        stages=("search", "calibrate"),
        code=("cofc.compiler.export.onnx", PREPARE),
    ),
    outputs=("onnx",),
)
def export(ctx: Context, found: SearchSummary, _: AccuracyReport) -> ExportResult:
    plan, teacher, onnx_dir = ctx.plan, ctx.teacher, ctx.out / "onnx"
    calibrated = load_calibrated(ctx, found.policy)
    example = teacher.preprocess(ctx.test.take(64, seed=plan.objective.seed).inputs)
    feeds = {k: v.numpy() for k, v in example.items()}
    feature = plan.calibration.feature
    checks = []
    for d, m in zip(plan.devices, calibrated.submodels, strict=True):
        path = export_backbone(teacher.adapter, m, example, onnx_dir / f"{d.name}.onnx", plan.export.opset, feature)
        with torch.no_grad():
            want = PooledBackbone(teacher.adapter, m, list(example), feature)(*example.values()).numpy()
        checks.append(parity(path, feeds, want, PARITY_TOLERANCE))
    fused = FusedModel(teacher.adapter, calibrated.submodels, calibrated.aggregator, feature)
    feats = batched(fused.features, example)
    mask = torch.ones(len(feats), len(found.policy))
    mask[::3, -1] = 0.0  # check the masked path too
    path = export_aggregator(calibrated.aggregator, onnx_dir / "aggregator.onnx", plan.export.opset)
    with torch.no_grad():
        want = calibrated.aggregator(feats, mask).numpy()
    checks.append(parity(path, {"features": feats.numpy(), "mask": mask.numpy()}, want, PARITY_TOLERANCE))
    path = export_teacher(teacher.adapter, teacher.model, example, onnx_dir / "teacher.onnx", plan.export.opset)
    with torch.no_grad():
        want = teacher.logits(example).numpy()
    checks.append(parity(path, feeds, want, PARITY_TOLERANCE))
    if bad := [c for c in checks if not c.ok]:
        raise CofcError(
            "ONNX export does not match torch: "
            + ", ".join(f"{c.graph} max abs error {c.max_abs:.2e} > {c.tolerance:.0e}" for c in bad)
        )
    if plan.export.precision == "int8":
        samples = ctx.cal.take(min(INT8_SAMPLES, len(ctx.cal)), seed=plan.objective.seed)
        x = teacher.preprocess(samples.inputs)
        gen = torch.Generator().manual_seed(plan.objective.seed)
        write_int8_calibration(
            [onnx_dir / f"{d.name}.onnx" for d in plan.devices],
            onnx_dir / "aggregator.onnx",
            {k: v.numpy() for k, v in x.items()},
            batched(fused.features, x).numpy(),
            random_mask(len(samples), len(found.policy), plan.calibration.feature_dropout, gen).numpy(),
        )
    return ExportResult(tuple(checks))


FP16_NOTE = (
    "export.precision fp16: the bundles' graphs stay FP32, since ONNX Runtime on a CPU gains nothing from "
    "FP16; TensorRT devices build FP16 engines from them at first run"
)


@stage(
    "quantize",
    Reads(
        plan=("export", *SPLITS, "devices"),  # a device's table says whether it runs TensorRT
        stages=("export",),
        code=("cofc.compiler.export.quantize", "cofc.compiler.export.precision", PREPARE),
    ),
    outputs=("onnx",),
)
def quantize(ctx: Context, _: ExportResult) -> Precisions:
    """INT8 plans: quantize every graph from its stored calibration inputs, then keep each INT8
    twin only where it loses at most export.max_drop and runs faster on this host, and only for a
    device that runs ONNX Runtime (a TensorRT device builds INT8 from the FP32 graph)."""
    plan, onnx_dir = ctx.plan, ctx.out / "onnx"
    names = [d.name for d in plan.devices]
    if plan.export.precision != "int8":
        if plan.export.precision == "fp16":
            log(FP16_NOTE)
        planned = f"{plan.export.precision} planned, FP32 graph"
        return Precisions(
            plan.export.precision,
            "",
            tuple(GraphPrecision(g, FP32, None, planned) for g in (*names, "aggregator", "teacher")),
        )
    if fp32_tables := [d.name for d in plan.devices if _table_provenance(d.profile, "precision") != "int8"]:
        log(
            f"the latency tables of {', '.join(fp32_tables)} were not measured at int8, so the search planned "
            "with the speeds of the precision they were; `cofc profile --precision int8` measures INT8's"
        )
    graphs = Graphs({n: onnx_dir / f"{n}.onnx" for n in names}, onnx_dir / "aggregator.onnx", onnx_dir / "teacher.onnx")
    runs_tensorrt = {d.name for d in plan.devices if _table_provenance(d.profile, "backend") == "tensorrt"}
    if plan.central.name in runs_tensorrt:
        runs_tensorrt.add("aggregator")
    twins = {**graphs.devices, "aggregator": graphs.aggregator}
    model_inputs = stored_calibration(graphs.devices[names[0]])  # the teacher reads what the backbones read
    for name, graph in tqdm(twins.items(), desc="quantizing graphs to INT8", leave=False):
        if name not in runs_tensorrt:  # TensorRT quantizes the FP32 graph itself
            quantize_graph(graph, stored_calibration(graph))
    quantize_graph(graphs.teacher, model_inputs)
    inputs = {k: v.numpy() for k, v in ctx.teacher.preprocess(ctx.val.inputs).items()}
    chosen = judge(graphs, inputs, np.asarray(ctx.val.labels), plan.export.max_drop, runs_tensorrt)
    for choice in chosen:
        log(choice.reason)
    return Precisions("int8", str(SCHEME), chosen)


def _table_provenance(profile: Path, key: str) -> str:
    """What a device's latency table was measured with: its `precision` (fp32 where it does not
    say) or `backend` (onnxruntime where it does not say)."""
    default = {"precision": "fp32", "backend": "onnxruntime"}[key]
    return str(json.loads(profile.read_text())["provenance"].get(key, default))


@stage(
    "bundle",
    Reads(
        plan=("name", "teacher", "devices", "runtime", "export", "calibration.feature"),
        stages=("search", "quantize"),
        code=(
            "cofc.compiler.export.bundle",
            "cofc.compiler.models.adapters._hf",
            "cofc.compiler.planning.objective",  # each worker's expected t1 + t2
            "cofc.compiler.pipeline.context",
        ),
    ),
    outputs=("bundle",),
)
def bundle(ctx: Context, found: SearchSummary, precisions: Precisions) -> BundleResult:
    pid = plan_id(ctx.keys["bundle"].encode())
    expected = {d.name: device_ms(d, found.policy, n, ctx.base, ctx.input_bytes) for n, d in enumerate(ctx.devices)}
    write_bundles(
        ctx.out,
        ctx.plan,
        pid,
        found.policy,
        ctx.out / "onnx",
        ctx.teacher,
        ctx.plan.calibration.feature,
        {g.graph: g for g in precisions.graphs},
        expected,
    )
    return BundleResult(pid, tuple(d.name for d in ctx.plan.devices))


@stage("engines", Reads(plan=("export.precision",), stages=("bundle",), code=("cofc.runtime.backends.tensorrt",)))
def build_engines(ctx: Context, bundles: BundleResult) -> EnginesResult:
    """Engines in each bundle's engines/ folder: a device with this GPU and TensorRT version
    loads them; any other rebuilds from the ONNX at first run (the sidecar tells)."""
    from cofc.runtime.backends.tensorrt import load_or_build

    graphs = [g for name in bundles.devices for g in (ctx.out / "bundle" / name).glob("*.onnx")]
    for graph in tqdm(graphs, desc=f"building {ctx.plan.export.precision} TensorRT engines", leave=False):
        load_or_build(graph, ctx.plan.export.precision)
    return EnginesResult(tuple(str(g.relative_to(ctx.out)) for g in graphs))


@stage(
    "evaluate",
    Reads(plan=TEST, stages=("bundle",), code=("cofc.runtime.pipeline", "cofc.compiler.export.precision", PREPARE)),
)
def evaluate(ctx: Context, bundles: BundleResult) -> OnnxAccuracy:
    from cofc.runtime.bundle import load_bundle
    from cofc.runtime.pipeline import LocalPipeline

    test, n = ctx.test, len(ctx.test)
    shipped = [load_bundle(ctx.out / "bundle" / name) for name in bundles.devices]
    with LocalPipeline(shipped) as pipeline:
        parts = [
            pipeline.features(test.inputs[i : i + 256])
            for i in tqdm(range(0, n, 256), desc="fused ONNX pipeline on the test split", leave=False)
        ]
        features = [np.concatenate([p[k] for p in parts]) for k in range(len(shipped))]
        result = _scores(features, pipeline.fuse, test.labels)
    if all(g.precision == "fp32" for b in shipped for g in b.manifest.graphs):
        return result
    fp32 = _fp32_twin(ctx, pipeline.preprocess(test.inputs), [b.device for b in shipped])
    return dataclasses.replace(result, fused_fp32=fp32.fused, alone_fp32=fp32.alone)


def _scores(
    features: list[np.ndarray], fuse: Callable[[list[np.ndarray], np.ndarray], np.ndarray], labels: np.ndarray
) -> OnnxAccuracy:
    """Fused accuracy with every device, with each one missing, and with each one alone."""
    n, every = len(labels), range(len(features))

    def accuracy(present: list[int]) -> float:
        mask = np.zeros((n, len(features)), np.float32)
        mask[:, present] = 1
        return float((fuse(features, mask).argmax(-1) == labels).mean())

    return OnnxAccuracy(
        accuracy(list(every)),
        tuple(accuracy([j for j in every if j != k]) for k in every),
        tuple(accuracy([k]) for k in every),
        n,
        None,
        None,
    )


def _fp32_twin(ctx: Context, inputs: dict[str, np.ndarray], devices: list[str]) -> OnnxAccuracy:
    """The same accuracies through the FP32 exports (OUT/onnx/) of the shipped graphs."""
    from cofc.compiler.export.precision import outputs
    from cofc.runtime.backends import open_backend

    onnx_dir = ctx.out / "onnx"
    features = [outputs(onnx_dir / f"{d}.onnx", inputs) for d in devices]
    with open_backend("onnxruntime", onnx_dir / "aggregator.onnx") as aggregator:

        def fuse(feats: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
            return aggregator.run({FEATURES: np.concatenate(feats, 1), MASK: mask})[LOGITS]

        return _scores(features, fuse, ctx.test.labels)


@dataclass(frozen=True)
class Built:
    """The results the report is made of, one field per stage (named as the stage)."""

    teacher: TeacherResult
    search: SearchSummary
    calibrate: AccuracyReport
    export: ExportResult
    quantize: Precisions
    bundle: BundleResult
    evaluate: OnnxAccuracy


def skipped(stage: Stage) -> str | None:
    """Why a stage does not run on this host, if it does not."""
    if stage.name == "engines" and "tensorrt" not in available_backends():
        return "no TensorRT on this host: each device builds its engines from its bundle's ONNX at first `cofc run`"
    return None


__all__ = ["STAGES", "Built", "Stage", "log", "skipped"]
