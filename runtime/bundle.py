"""A device bundle: the folder `cofc build` writes per device and `scp -r` deploys.

    bundle/<device>/
      manifest.json      plan id, role, sub-model spec, graph inputs/outputs, preprocessing,
                         central endpoint, CURVE public keys, sha256 of every other file
      manifest.sha256    sha256 of manifest.json
      backbone.onnx      inputs -> pooled feature (every device)
      aggregator.onnx    features, mask -> logits (central only)
      *.calib.npz        INT8 plans only: each graph's calibration inputs for TensorRT
      tokenizer.json     text plans only (read with the `tokenizers` package, not transformers)
      keys.json          this device's CURVE key pair
      client.json        central only: a client key pair for local clients (cofc run --input)
      engines/           built here on first run (TensorRT), not part of the hash

Loading verifies everything: a changed, missing or unexpected file is refused by name. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cofc.errors import CofcError

FORMAT = "cofc-bundle/1"
MANIFEST, DIGEST, ENGINES = "manifest.json", "manifest.sha256", "engines"


class BundleError(CofcError):
    """A bundle that must not be run: tampered, incomplete, or of another plan."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @property
    def device(self) -> str:
        return self.manifest["device"]["name"]

    @property
    def role(self) -> str:
        return self.manifest["device"]["role"]

    @property
    def plan_id(self) -> str:
        return self.manifest["plan"]["id"]

    @property
    def digest(self) -> str:
        """Identity a worker announces: the manifest's sha256 (it pins every file's sha256)."""
        return (self.path / DIGEST).read_text().split()[0]

    def file(self, name: str) -> Path:
        return self.path / name

    def keys(self) -> dict[str, str]:
        return json.loads((self.path / "keys.json").read_text())


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle and verify every file against its manifest; BundleError names what is wrong."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a cofc bundle: {MANIFEST} is missing")
    if not (path / DIGEST).is_file():
        raise BundleError(f"{path / DIGEST} is missing")
    if sha256_file(manifest_path) != (path / DIGEST).read_text().split()[0]:
        raise BundleError(f"{manifest_path} was modified: its sha256 does not match {DIGEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT}")
    listed = manifest["files"]
    for name, want in listed.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file} is missing")
        if sha256_file(file) != want:
            raise BundleError(f"{file} was modified: its sha256 does not match the manifest")
    for file in path.rglob("*"):
        rel = file.relative_to(path).as_posix()
        if file.is_file() and rel not in listed and rel not in (MANIFEST, DIGEST) and not rel.startswith(ENGINES + "/"):
            raise BundleError(f"{file} is not part of the bundle (not in its manifest)")
    return Bundle(path, manifest)


def describe(bundle: Bundle) -> str:
    """A readable summary for `cofc inspect`."""
    m = bundle.manifest
    spec = m["submodel"]["spec"]
    lines = [
        f"bundle {bundle.path}: device {bundle.device} ({bundle.role}) of plan {m['plan']['name']} [{bundle.plan_id}]",
        f"  sub-model: {spec['layers']} layers, width {spec['dim']}, heads {spec['heads']}, MLP {spec['mlp']}",
        f"  feature:   {m['submodel']['feature']} -> {m['submodel']['feature_dim']} float32 per request",
        "  inputs:    " + ", ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in m["inputs"]),
        f"  precision: {m['precision']}; central at {m['central']['endpoint']}",
    ]
    if bundle.role == "central":
        lines.append("  fuses:     " + ", ".join(f"{d['name']} ({d['feature_dim']})" for d in m["devices"]))
        lines.append(f"  accepts:   {len(m['central']['worker_keys'])} worker keys")
    lines.append(f"  files:     {len(m['files'])} verified by sha256: " + ", ".join(sorted(m["files"])))
    return "\n".join(lines)
