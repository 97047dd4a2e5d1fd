"""A device bundle: the folder `cofc build` writes per device and `scp -r` deploys.

    bundle/<device>/
      manifest.json      typed (runtime/manifest.py): plan id, role, sub-model spec, graph inputs
                         and outputs, preprocessing, central endpoint, CURVE public keys, and the
                         sha256 of every other file
      manifest.sha256    sha256 of manifest.json
      backbone.onnx      inputs -> pooled feature (every device); FP32, or ONNX Runtime's INT8 twin
                         where the manifest's `graphs` says so: ONNX Runtime loads either as it is
      aggregator.onnx    features, mask -> logits (central only), likewise
      *.calib.npz        INT8 plans only: each FP32 graph's calibration inputs (TensorRT engines)
      tokenizer.json     text plans only (read with the `tokenizers` package, not transformers)
      keys.json          this device's CURVE key pair
      client.json        central only: a client key pair for local clients (cofc run --input)
      engines/           built here on first run (TensorRT), not part of the hash

Loading verifies everything: a changed, missing or unexpected file is refused by name. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cofc.runtime._files import sha256_file
from cofc.runtime.keys import KeyPair
from cofc.runtime.manifest import (
    DIGEST,
    MANIFEST,
    BundleError,
    Fusion,
    Manifest,
    Preprocess,
    Role,
    TextPreprocess,
    read_manifest,
)

ENGINES = "engines"


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def device(self) -> str:
        return self.manifest.device.name

    @property
    def role(self) -> Role:
        return self.manifest.device.role

    @property
    def plan_id(self) -> str:
        return self.manifest.plan.id

    @property
    def digest(self) -> str:
        """Identity a worker announces: the manifest's sha256 (it pins every file's sha256)."""
        return (self.path / DIGEST).read_text().split()[0]

    @property
    def fusion(self) -> Fusion:
        """What the central bundle fuses; BundleError on a worker's."""
        if self.manifest.fusion is None:
            raise BundleError(f"{self.path} is a {self.role} bundle, not the central one")
        return self.manifest.fusion

    def file(self, name: str) -> Path:
        return self.path / name

    def keys(self) -> KeyPair:
        """This device's CURVE key pair."""
        return KeyPair.read(self.path / "keys.json")

    def client_keys(self) -> KeyPair:
        """Central only: the key pair of clients on this device."""
        return KeyPair.read(self.path / "client.json")


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
    manifest = read_manifest(manifest_path)
    for name, want in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file} is missing")
        if sha256_file(file) != want:
            raise BundleError(f"{file} was modified: its sha256 does not match the manifest")
    for file in path.rglob("*"):
        rel = file.relative_to(path).as_posix()
        if (
            file.is_file()
            and rel not in manifest.files
            and rel not in (MANIFEST, DIGEST)
            and not rel.startswith(ENGINES + "/")
        ):
            raise BundleError(f"{file} is not part of the bundle (not in its manifest)")
    return Bundle(path, manifest)


def describe(bundle: Bundle) -> str:
    """A readable summary for `cofc inspect`."""
    m = bundle.manifest
    spec = m.submodel.spec
    lines = [
        f"bundle {bundle.path}: device {bundle.device} ({bundle.role}) of plan {m.plan.name} [{bundle.plan_id}]",
        f"  sub-model: {spec.layers} layers, width {spec.dim}, heads {list(spec.heads)}, MLP {list(spec.mlp)}",
        f"  feature:   {m.submodel.feature} -> {m.submodel.feature_dim} float32 per request",
        "  inputs:    " + ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in m.inputs),
        f"  reads:     {_reads(m.preprocess)}",
        f"  precision: {m.precision}; central at {m.central.endpoint}; manifest schema {m.schema}",
        *(f"  graph:     {g.file} {g.precision.upper()}: {g.note}" for g in m.graphs),
    ]
    if m.fusion is not None:
        lines.append("  fuses:     " + ", ".join(f"{d.name} ({d.feature_dim})" for d in m.fusion.devices))
        lines.append(f"  accepts:   {len(m.fusion.workers)} worker keys")
    lines.append(f"  files:     {len(m.files)} verified by sha256: " + ", ".join(sorted(m.files)))
    return "\n".join(lines)


def _reads(prep: Preprocess) -> str:
    """How the device turns raw inputs into its graph inputs (manifest `preprocess`)."""
    if isinstance(prep, TextPreprocess):
        return (
            f"UTF-8 texts, {prep.tokenizer_file}, padded or cut to {prep.max_length} tokens "
            f"with {prep.pad_token} ({prep.pad_id})"
        )
    image = prep.image
    return (
        f"images as {'grey' if image.channels == 1 else 'RGB'} {image.size[0]}x{image.size[1]} "
        f"({image.interpolation}, crop {image.crop_pct:g}), normalised by mean {list(prep.mean)}, "
        f"std {list(prep.std)}"
    )
