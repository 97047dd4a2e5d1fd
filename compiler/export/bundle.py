"""Write one bundle folder per device (layout: runtime/bundle.py; manifest: runtime/manifest.py),
so that `scp -r` of a folder is that device's whole deployment.

Each device gets its own CURVE key pair; the central bundle lists the public keys of the workers
it accepts, and every worker bundle holds the central's public key and endpoint. A folder is
assembled beside its final place and renamed into it, so a failed build leaves no half bundle.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from cofc.compiler.export.precision import GraphPrecision
from cofc.compiler.export.quantize import int8_path
from cofc.compiler.models.adapters._hf import padding, tokenizer_file
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.plan import Plan
from cofc.compiler.planning.spec import SubModelSpec
from cofc.runtime._files import sha256_file
from cofc.runtime.backends import TensorSpec, open_backend
from cofc.runtime.backends._calibration import calibration_path
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.keys import KeyPair
from cofc.runtime.manifest import (
    CentralInfo,
    DeviceRef,
    FusedDevice,
    Fusion,
    GraphInfo,
    ImagePreprocess,
    Manifest,
    PlanRef,
    Preprocess,
    SubModelInfo,
    SubModelShape,
    TensorInfo,
    TextPreprocess,
    WorkerRef,
    write_manifest,
)

TOKENIZER = "tokenizer.json"


def plan_id(*parts: bytes) -> str:
    """A short id of everything a deployment depends on: peers of other builds are refused."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _tensors(specs: Sequence[TensorSpec]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(s.name, s.shape, s.dtype.name) for s in specs)


def _graph_io(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The graph's inputs and outputs as ONNX Runtime, the reference backend, reads them."""
    with open_backend("onnxruntime", path) as backend:
        return _tensors(backend.inputs), _tensors(backend.outputs)


def device_preprocess(teacher: Teacher) -> tuple[Preprocess, Path | None]:
    """What a device needs to turn raw inputs into the teacher's inputs without torch, exactly as
    the compiler does: image file parameters and normalisation, or the tokenizer.json, the length
    and the padding of a text teacher (and that file, which each bundle carries)."""
    prep = teacher.record["preprocess"]
    if teacher.expects.image is not None:
        return ImagePreprocess(
            tuple(map(float, prep["mean"])), tuple(map(float, prep["std"])), teacher.expects.image
        ), None
    pad_id, pad_token = padding(teacher.record)
    length = int(prep.get("max_length", teacher.model.seq_len))
    return TextPreprocess(length, TOKENIZER, pad_id, pad_token, pair_column=prep.get("pair_column")), tokenizer_file(
        teacher.record
    )


def write_bundles(
    out: Path,
    plan: Plan,
    pid: str,
    policy: Sequence[SubModelSpec],
    onnx_dir: Path,
    teacher: Teacher,
    feature: str,
    precisions: Mapping[str, GraphPrecision],
    expected_ms: Mapping[str, float],
) -> list[Path]:
    """One folder per device under out/bundle/, for the policy's sub-models of `teacher`; each
    graph (a device's name, or "aggregator") as `precisions` chose: the FP32 export or its INT8 twin.
    Central's manifest gives each worker's predicted t1 + t2 (`expected_ms`): it paces its probes."""
    keys = {d.name: KeyPair.generate() for d in plan.devices}
    client = KeyPair.generate()
    central = CentralInfo(
        Endpoint(plan.central.address, plan.runtime.port),
        keys[plan.central.name].public,
        float(plan.runtime.deadline_ms),
        plan.runtime.min_devices,
        plan.runtime.straggler_window,
        plan.runtime.probe_every,
        float(plan.runtime.slow_factor),
    )
    prep, tokenizer = device_preprocess(teacher)
    fused = tuple(
        FusedDevice(d.name, "central" if d.central else "worker", teacher.spec.feature_dim(s.dim))
        for d, s in zip(plan.devices, policy, strict=True)
    )
    folders: list[Path] = []
    digests: dict[str, str] = {}
    # Workers first: the central manifest pins each worker's manifest digest.
    order = sorted(range(len(plan.devices)), key=lambda i: plan.devices[i].central)
    for index in order:
        device, spec = plan.devices[index], policy[index]
        final = out / "bundle" / device.name
        work = final.with_name(device.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        graphs = {device.name: "backbone.onnx"}
        if device.central:
            graphs["aggregator"] = "aggregator.onnx"
        infos = []
        for graph, name in graphs.items():
            source, chosen = onnx_dir / f"{graph}.onnx", precisions[graph]
            shutil.copyfile(int8_path(source) if chosen.precision == "int8" else source, work / name)
            if calibration_path(source).exists():  # INT8 builds: the engine's calibration inputs
                shutil.copyfile(calibration_path(source), calibration_path(work / name))
            infos.append(GraphInfo(name, "int8" if chosen.precision == "int8" else "fp32", chosen.reason))
        if tokenizer is not None:
            shutil.copyfile(tokenizer, work / TOKENIZER)
        keys[device.name].write(work / "keys.json")
        fusion = None
        if device.central:
            client.write(work / "client.json")  # for clients on the central device (cofc run --input)
            fusion = Fusion(
                fused,
                tuple(
                    WorkerRef(d.name, keys[d.name].public, digests[d.name], expected_ms[d.name])
                    for d in plan.devices
                    if not d.central
                ),
                (client.public,),
                teacher.expects.classes,
            )
        inputs, outputs = _graph_io(work / "backbone.onnx")
        manifest = Manifest(
            PlanRef(plan.name, pid),
            DeviceRef(device.name, fused[index].role, index),
            SubModelInfo(SubModelShape(spec.layers, spec.dim, spec.heads, spec.mlp), feature, fused[index].feature_dim),
            inputs,
            outputs,
            prep,
            plan.export.precision,
            tuple(infos),
            plan.export.opset,
            central,
            fusion,
            {f.name: sha256_file(f) for f in sorted(work.iterdir())},
        )
        digests[device.name] = write_manifest(work, manifest)
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
        folders.append(final)
    return sorted(folders, key=lambda f: [d.name for d in plan.devices].index(f.name))
