"""`cofc build`: every stage from plan to bundles, each saved in the build folder.

    teacher    validate plan, teacher and data; teacher accuracy on the test split
    importance rank heads, neurons, channels, layers on calibration data
    search     DeBo, random and uniform search under C1–C6 (planner: pure functions)
    calibrate  decompose the chosen policy, boost, train the aggregator, fine-tune jointly
    export     ONNX per device + aggregator, checked against torch (fails past tolerance)
    bundle     one folder per device with manifest, hashes and CURVE keys
    engines    TensorRT engines into each bundle's engines/, only where this host has TensorRT
    evaluate   the bundles' fused pipeline through ONNX Runtime on the test split
    report     report.json, report.md and plots

A stage whose result is in OUT/stages/ and whose key (plan, teacher and profile files) has not
changed is not run again; `--force` reruns everything. Results are written atomically.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from cofc import __version__
from cofc.compiler.export.bundle import plan_id, write_bundles
from cofc.compiler.calibration.calibrate import (Calibrated, CalibrationConfig, FusedModel, accuracy_report, batched,
                                     calibrate, random_mask)
from cofc.compiler.models.decompose import decompose
from cofc.compiler.planning.objective import DeviceModel, Evaluator
from cofc.compiler.export.onnx import (INT8_SAMPLES, PooledBackbone, export_aggregator, export_backbone, export_teacher,
                                  parity, write_int8_calibration)
from cofc.compiler.models.fusion import Aggregator
from cofc.compiler.scoring.importance import Importance, rank_units
from cofc.compiler.models.metrics import accuracy
from cofc.compiler.plan.prepare import prepare
from cofc.compiler.plan import Plan
from cofc.compiler.latency.predictor import Predictor, fit_predictor, predictor_path
from cofc.compiler.scoring.proxy import ValidationLoss
from cofc.compiler.planning.search import SearchResult, SearchSpace, debo, random_search, uniform_search
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec
from cofc.errors import CofcError
from cofc.runtime._files import atomic_write_json
from cofc.runtime.backends import available as available_backends
from cofc.runtime.bundle import load_bundle
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.preprocess import packed_request_bytes

PARITY_TOLERANCE = 1e-3  # max abs difference of ONNX Runtime vs torch on features and logits


def log(message: str) -> None:
    tqdm.write(f"cofc: {message}", file=sys.stderr)


class Stages:
    """Results of finished stages, kept while the build's inputs are unchanged."""

    def __init__(self, out: Path, key: str, force: bool):
        self.dir = out / "stages"
        state = self.dir / "key.json"
        if force or not state.exists() or json.loads(state.read_text()).get("key") != key:
            for old in self.dir.glob("*.json"):
                old.unlink()
            atomic_write_json(state, {"key": key})

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        path = self.dir / f"{name}.json"
        if path.exists():
            log(f"stage {name}: done earlier, reusing {path}")
            return json.loads(path.read_text())
        start = time.time()
        log(f"stage {name} ...")
        result = fn()
        atomic_write_json(path, {"seconds": round(time.time() - start, 1), "result": result})
        return json.loads(path.read_text())


def _inputs_key(plan: Plan) -> str:
    digest = hashlib.sha256(__version__.encode())
    files = [plan.path, *(d.profile for d in plan.devices)]
    if plan.teacher.checkpoint is not None:
        files.append(plan.teacher.checkpoint)
    for f in files:
        digest.update(Path(f).read_bytes())
    return digest.hexdigest()


def device_models(plan: Plan, base: TransformerSpec) -> list[DeviceModel]:
    """Each device's predictor (fitted and stored beside its table if not yet) and budgets."""
    models = []
    for i, d in enumerate(plan.devices):
        table = json.loads(d.profile.read_text())
        if TransformerSpec(**table["provenance"]["teacher"]) != base:
            raise plan.error(f"devices[{i}].profile", f"{d.profile} was profiled for another teacher or "
                             "input size; profile this teacher on this device")
        if table["provenance"].get("estimated"):
            log(f"warning: {d.name} plans against an ESTIMATED latency table ({d.profile}: "
                f"{table['provenance'].get('method')}); capture a measured one with 'cofc profile' on the device")
        path = predictor_path(d.profile)
        if path.exists() and path.with_suffix(".npz").exists():
            predictor = Predictor.load(path)
        else:
            predictor = fit_predictor(table)
            predictor.save(path)
        throughput = statistics.median(r["flops"] / r["ms"] for r in table["rows"])
        models.append(DeviceModel(d.name, predictor, d.link_mbps, d.max_mflops * 1e6, d.memory_mb * 2 ** 20,
                                  throughput, d.central))
    return models


def request_bytes(teacher) -> int:
    """Bytes of one raw request on the wire, as the runtime packs it."""
    prep = teacher.record["preprocess"]
    if prep["kind"] == "image":
        pe = teacher.model.patch_embed
        return packed_request_bytes("image", (pe.proj.in_channels, *pe.img_size))
    return packed_request_bytes("text", max_length=teacher.model.seq_len)


def _history(result: SearchResult) -> list[dict]:
    return [{"policy": [s.to_dict() for s in e.policy], "loss": e.loss, "latency_ms": e.latency.total,
             "objective": e.objective} for e in result.history]


def _plot_search(results: dict[str, SearchResult], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        if len(result.history) == 1:
            ax.axhline(result.best.objective, linestyle="--", color="gray", label=f"{name} (one policy)")
        elif result.history:
            best = result.best_so_far()
            ax.plot(range(1, len(best) + 1), best, label=name)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best Ψ = L_val + δ·T so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _load_calibrated(adapter, teacher, policy, state: dict, feature: str) -> Calibrated:
    base = adapter.spec(teacher)
    subs = [adapter.build_submodel(teacher, s) for s in policy]
    for m, sd in zip(subs, state["submodels"]):
        m.load_state_dict(sd)
        m.eval()
    aggs = []
    for key in ("aggregator", "plain_aggregator"):
        agg = Aggregator([s.dim for s in policy], base.dim, adapter.head(teacher))
        agg.load_state_dict(state[key])
        aggs.append(agg.eval())
    return Calibrated(tuple(policy), subs, aggs[0], aggs[1], feature)


def build(plan_path: Path, out: Path | None = None, force: bool = False) -> dict[str, Any]:
    prepared = prepare(plan_path)
    plan, teacher, adapter, base = prepared.plan, prepared.teacher, prepared.adapter, prepared.base
    out = Path(out or plan.output)
    cal, val, _, test = prepared.splits()
    devices = device_models(plan, base)
    input_bytes = request_bytes(teacher)
    key = _inputs_key(plan)
    stages = Stages(out, key, force)
    torch.manual_seed(plan.objective.seed)

    teacher_stage = stages.run("teacher", lambda: {
        "spec": {k: getattr(base, k) for k in base.__dataclass_fields__},
        "accuracy": accuracy(adapter, teacher.model, teacher.record, test.inputs, test.labels,
                             desc="teacher on the test split")})

    def importance_stage() -> dict:
        n = min(len(cal), 2000)
        return rank_units(adapter, teacher.model, teacher.record, cal.inputs[:n], cal.labels[:n]).to_dict()
    importance = Importance.from_dict(stages.run("importance", importance_stage)["result"])

    def search_stage() -> dict:
        proxy = ValidationLoss(adapter, teacher.model, teacher.record, importance, val.inputs, val.labels,
                               plan.calibration.feature)
        evaluator = Evaluator(devices, base, proxy, plan.objective.delta, input_bytes)
        space = SearchSpace(base, len(devices))
        budget = plan.objective.initial + plan.objective.iterations
        with tqdm(total=2 * budget + 1, desc="searching decompositions", leave=False) as bar:
            tick = lambda _: bar.update()  # noqa: E731
            results = {"debo": debo(space, evaluator, plan.objective.initial, plan.objective.iterations,
                                    plan.objective.seed, progress=tick),
                       "random": random_search(space, evaluator, budget, plan.objective.seed, progress=tick),
                       "uniform": uniform_search(space, evaluator)}
        if not results["debo"].history:
            raise plan.error("devices", "no decomposition satisfies C1–C6 for these devices; "
                             "raise memory_mb or max_mflops, or use fewer devices")
        _plot_search(results, out / "search.png")
        best = results["debo"].best
        return {"policy": [s.to_dict() for s in best.policy], "objective": best.objective,
                "evaluations": len(results["debo"].history),
                "best": {k: (r.best.objective if r.history else None) for k, r in results.items()},
                "history": {k: _history(r) for k, r in results.items()}}
    search = stages.run("search", search_stage)["result"]
    policy = tuple(SubModelSpec.from_dict(s) for s in search["policy"])
    calib_path = out / "calibrated.pt"

    def calibrate_stage() -> dict:
        config = CalibrationConfig.from_plan(plan.calibration, plan.objective.seed)
        train, fusion = prepared.calibration_sets()
        result = calibrate(adapter, teacher.model, teacher.record, policy, importance, train.inputs, train.labels,
                           config, (fusion.inputs, fusion.labels) if fusion is not None else None)
        torch.save({"submodels": [m.state_dict() for m in result.submodels],
                    "aggregator": result.aggregator.state_dict(),
                    "plain_aggregator": result.plain_aggregator.state_dict()}, calib_path)
        uncalibrated = decompose(adapter, teacher.model, policy, importance)
        return accuracy_report(adapter, teacher.model, teacher.record, result, test.inputs, test.labels, uncalibrated)
    torch_accuracy = stages.run("calibrate", calibrate_stage)["result"]
    calibrated = _load_calibrated(adapter, teacher.model, policy, torch.load(calib_path, weights_only=True),
                                  plan.calibration.feature)
    onnx_dir = out / "onnx"

    def export_stage() -> dict:
        probe = test.take(64, seed=plan.objective.seed)
        example = adapter.preprocess(teacher.record, probe.inputs)
        feeds = {k: v.numpy() for k, v in example.items()}
        checks = []
        for d, m in zip(plan.devices, calibrated.submodels):
            path = export_backbone(adapter, m, example, onnx_dir / f"{d.name}.onnx", plan.export.opset,
                                   plan.calibration.feature)
            with torch.no_grad():
                want = PooledBackbone(adapter, m, list(example), plan.calibration.feature)(*example.values()).numpy()
            checks.append(parity(path, feeds, want, PARITY_TOLERANCE))
        fused = FusedModel(adapter, calibrated.submodels, calibrated.aggregator, plan.calibration.feature)
        feats = batched(fused.features, example)
        mask = torch.ones(len(feats), len(policy))
        mask[::3, -1] = 0.0  # check the masked path too
        path = export_aggregator(calibrated.aggregator, onnx_dir / "aggregator.onnx", plan.export.opset)
        with torch.no_grad():
            want = calibrated.aggregator(feats, mask).numpy()
        checks.append(parity(path, {"features": feats.numpy(), "mask": mask.numpy()}, want, PARITY_TOLERANCE))
        path = export_teacher(adapter, teacher.model, example, onnx_dir / "teacher.onnx", plan.export.opset)
        with torch.no_grad():
            want = adapter.logits(teacher.model, example).numpy()
        checks.append(parity(path, feeds, want, PARITY_TOLERANCE))
        bad = [c for c in checks if not c.ok]
        if bad:
            raise CofcError("ONNX export does not match torch: " + ", ".join(
                f"{c.graph} max abs error {c.max_abs:.2e} > {c.tolerance:.0e}" for c in bad))
        if plan.export.precision == "int8":
            samples = cal.take(min(INT8_SAMPLES, len(cal)), seed=plan.objective.seed)
            x = adapter.preprocess(teacher.record, samples.inputs)
            gen = torch.Generator().manual_seed(plan.objective.seed)
            write_int8_calibration([onnx_dir / f"{d.name}.onnx" for d in plan.devices], onnx_dir / "aggregator.onnx",
                                   {k: v.numpy() for k, v in x.items()}, batched(fused.features, x).numpy(),
                                   random_mask(len(samples), len(policy), plan.calibration.feature_dropout,
                                               gen).numpy())
        return [c.to_dict() for c in checks]
    export = stages.run("export", export_stage)["result"]

    def bundle_stage() -> dict:
        prep = dict(teacher.record["preprocess"])
        tokenizer = None
        if prep["kind"] == "text":
            from cofc.compiler.models.adapters._hf import resolve_source
            source = prep.get("tokenizer") or teacher.record["arch"]["source"]
            tokenizer = Path(resolve_source(source)) / "tokenizer.json"
            prep = {"kind": "text", "max_length": prep.get("max_length", teacher.model.seq_len)}
        pid = plan_id(key.encode(), json.dumps(search["policy"]).encode())
        folders = write_bundles(out, plan, pid, policy, onnx_dir, prep, tokenizer, plan.calibration.feature,
                                 teacher.record["classes"])
        return {"plan_id": pid, "bundles": [str(f) for f in folders]}
    bundles = stages.run("bundle", bundle_stage)["result"]

    def engines_stage() -> list[str]:
        """Engines in each bundle's engines/ folder: a device with this GPU and TensorRT version
        loads them; any other rebuilds from the ONNX at first run (the sidecar tells)."""
        from cofc.runtime.backends.tensorrt import load_or_build
        graphs = [g for b in bundles["bundles"] for g in (Path(b) / "backbone.onnx", Path(b) / "aggregator.onnx")
                  if g.exists()]
        for graph in tqdm(graphs, desc=f"building {plan.export.precision} TensorRT engines", leave=False):
            load_or_build(graph, plan.export.precision)
        return [str(g.relative_to(out)) for g in graphs]
    if "tensorrt" in available_backends():
        stages.run("engines", engines_stage)
    else:
        log("no TensorRT on this host: each device builds its engines from its bundle's ONNX at first `cofc run`")

    def evaluate_stage() -> dict:
        pipeline = LocalPipeline([load_bundle(b) for b in bundles["bundles"]])
        feats, labels = [], test.labels
        for i in tqdm(range(0, len(labels), 256), desc="fused ONNX pipeline on the test split", leave=False):
            feats.append(pipeline.features(test.inputs[i:i + 256]))
        per_device = [np.concatenate([f[k] for f in feats]) for k in range(len(policy))]
        n = len(labels)

        def acc(mask: np.ndarray) -> float:
            return float((pipeline.fuse(per_device, mask).argmax(-1) == labels).mean())
        missing = []
        for k in range(len(policy)):
            mask = np.ones((n, len(policy)), np.float32)
            mask[:, k] = 0
            missing.append(acc(mask))
        return {"fused": acc(np.ones((n, len(policy)), np.float32)), "missing": missing, "samples": n}
    ort = stages.run("evaluate", evaluate_stage)["result"]

    from cofc.compiler.build.report import write_report
    return write_report(out, plan, base, devices, policy, input_bytes, teacher_stage, search, torch_accuracy, ort,
                        export, bundles)
