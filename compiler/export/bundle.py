"""Write one bundle folder per device (format: cofc/runtime/bundle.py), so that `scp -r` of a
folder is that device's whole deployment.

Each device gets its own CURVE key pair; the central bundle lists the public keys of the workers
it accepts, and every worker bundle holds the central's public key and endpoint. A folder is
assembled beside its final place and renamed into it, so a failed build leaves no half bundle.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import zmq

from cofc.compiler.plan import Plan
from cofc.compiler.planning.spec import SubModelSpec
from cofc.runtime.backends import open_backend
from cofc.runtime.backends._calibration import calibration_path
from cofc.runtime.bundle import DIGEST, FORMAT, MANIFEST, sha256_file


def plan_id(*parts: bytes) -> str:
    """A short id of everything a deployment depends on: peers of other builds are refused."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _graph_io(path: Path) -> tuple[list[dict], list[dict]]:
    backend = open_backend("onnxruntime", path)
    as_dicts = lambda specs: [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype.name} for s in specs]  # noqa: E731
    return as_dicts(backend.inputs), as_dicts(backend.outputs)


def write_bundles(out: Path, plan: Plan, pid: str, policy: Sequence[SubModelSpec], onnx_dir: Path,
                  preprocess: dict[str, Any], tokenizer: Path | None, feature: str,
                  classes: Sequence[str]) -> list[Path]:
    keys = {d.name: zmq.curve_keypair() for d in plan.devices}
    client_public, client_secret = zmq.curve_keypair()
    central = plan.central
    endpoint = f"tcp://{central.address}:{plan.runtime.port}"
    devices = [{"name": d.name, "feature_dim": s.dim, "role": "central" if d.central else "worker"}
               for d, s in zip(plan.devices, policy)]
    folders, digests = [], {}
    # Workers first: the central manifest pins each worker's manifest digest.
    order = sorted(range(len(plan.devices)), key=lambda i: plan.devices[i].central)
    for index in order:
        device, spec = plan.devices[index], policy[index]
        final = out / "bundle" / device.name
        work = final.with_name(device.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        graphs = {f"{device.name}.onnx": "backbone.onnx"}
        if device.central:
            graphs["aggregator.onnx"] = "aggregator.onnx"
        for source, name in graphs.items():
            shutil.copyfile(onnx_dir / source, work / name)
            if calibration_path(onnx_dir / source).exists():  # INT8 builds: the engine's calibration inputs
                shutil.copyfile(calibration_path(onnx_dir / source), calibration_path(work / name))
        prep = dict(preprocess)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, work / "tokenizer.json")
            prep["tokenizer_file"] = "tokenizer.json"
        public, secret = keys[device.name]
        (work / "keys.json").write_text(json.dumps({"public": public.decode(), "secret": secret.decode()}))
        if device.central:  # for clients on the central device (cofc run --input, the client API)
            (work / "client.json").write_text(json.dumps({"public": client_public.decode(),
                                                          "secret": client_secret.decode()}))
        inputs, outputs = _graph_io(work / "backbone.onnx")
        manifest = {
            "format": FORMAT,
            "plan": {"name": plan.name, "id": pid},
            "device": {"name": device.name, "role": "central" if device.central else "worker", "index": index},
            "submodel": {"spec": spec.to_dict(), "feature": feature, "feature_dim": spec.dim},
            "inputs": inputs, "outputs": outputs, "preprocess": prep,
            "precision": plan.export.precision, "opset": plan.export.opset,
            "central": {"endpoint": endpoint, "public_key": keys[central.name][0].decode(),
                        "deadline_ms": plan.runtime.deadline_ms, "min_devices": plan.runtime.min_devices},
            "files": {},
        }
        if device.central:
            manifest["devices"] = devices
            manifest["central"]["worker_keys"] = {d.name: keys[d.name][0].decode()
                                                  for d in plan.devices if not d.central}
            manifest["central"]["worker_digests"] = digests
            manifest["central"]["client_keys"] = [client_public.decode()]
            manifest["classes"] = list(classes)
        manifest["files"] = {f.name: sha256_file(f) for f in sorted(work.iterdir())}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        digests[device.name] = sha256_file(work / MANIFEST)
        (work / DIGEST).write_text(f"{digests[device.name]}  {MANIFEST}\n")
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
        folders.append(final)
    return sorted(folders, key=lambda f: [d.name for d in plan.devices].index(f.name))
