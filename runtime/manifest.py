"""The bundle manifest, typed: one definition for the writer (`cofc build`) and every reader (the
runtime, `cofc inspect`, `cofc bench`).

manifest.json carries an integer schema version. Reading refuses, as a `BundleError` naming the
file and the field, a manifest of another schema version (an old one without a version is told to
rebuild), a missing or unexpected field, and a field of the wrong type, before anything uses it.
The older versions still read are upgraded as they are read: 4, whose graphs were all FP32
(`graphs` is filled in so), and 5, whose workers carried no expected t1 + t2 (None: central paces
its probes by what it measures) and whose first text bundles no `pair_column` (one text each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cofc.errors import CofcError
from cofc.runtime._files import sha256_file
from cofc.runtime._typed_json import SchemaError, from_json, to_json
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.images import ImageInput

SCHEMA = 6  # 1: the untyped "format": "cofc-bundle/1"; 2: before the straggler settings; 3: before
# the image file parameters and the tokenizer's padding; 4: before `graphs` (every graph FP32);
# 5: before each worker's `expected_ms`
READABLE = (4, 5, SCHEMA)  # versions read; the older ones upgraded as they are read (`_UPGRADES`)
MANIFEST, DIGEST = "manifest.json", "manifest.sha256"
Role = Literal["central", "worker"]


class BundleError(CofcError):
    """A bundle that must not be run: tampered, incomplete, of another plan or another cofc."""


@dataclass(frozen=True)
class PlanRef:
    name: str
    id: str  # peers of another build are refused by it


@dataclass(frozen=True)
class DeviceRef:
    name: str
    role: Role
    index: int  # position in the plan's device list


@dataclass(frozen=True)
class SubModelShape:
    """C_n = (l_n, d_n, h_n[1..l_n], D_n[1..l_n]) of the sub-model this device runs."""

    layers: int
    dim: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]


@dataclass(frozen=True)
class SubModelInfo:
    spec: SubModelShape
    feature: str  # how tokens become the feature sent (e.g. "pool")
    feature_dim: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]  # None where the axis is dynamic (the batch)
    dtype: str  # numpy dtype name


@dataclass(frozen=True)
class ImagePreprocess:
    mean: tuple[float, ...]  # per channel, on pixels scaled to 0..1
    std: tuple[float, ...]
    image: ImageInput  # how an image file becomes the uint8 array that is normalised
    kind: Literal["image"] = "image"


@dataclass(frozen=True)
class TextPreprocess:
    max_length: int  # every request is padded or truncated to this many tokens
    tokenizer_file: str  # in the bundle, read with the `tokenizers` package
    pad_id: int  # the compiler's padding (the tokenizer's own, or the model's): ids match it exactly
    pad_token: str
    kind: Literal["text"] = "text"
    # Set for a model of text pairs: the column its second text is read from (`cofc run --input`);
    # each pair is tokenized as the tokenizer's pair template, as the compiler does.
    pair_column: str | None = None


Preprocess = ImagePreprocess | TextPreprocess


@dataclass(frozen=True)
class CentralInfo:
    """How every device reaches central, and the service central promises."""

    endpoint: Endpoint
    public_key: str
    deadline_ms: float
    min_devices: int
    # A worker whose p90 t1+t2 over the last `straggler_window` requests exceeds
    # slow_factor x deadline_ms is not waited for; every `probe_every`-th request still goes to it.
    straggler_window: int = 20
    probe_every: int = 10
    slow_factor: float = 1.0


@dataclass(frozen=True)
class FusedDevice:
    name: str
    role: Role
    feature_dim: int


@dataclass(frozen=True)
class WorkerRef:
    """A worker central admits: its CURVE key, and the digest of the bundle it must announce."""

    name: str
    public_key: str
    digest: str
    expected_ms: float | None  # its predicted t1 + t2 from the plan's tables (None: a schema 5 bundle)


@dataclass(frozen=True)
class Fusion:
    """Central only: whose features it fuses (in the aggregator's order), whom it admits, and
    the names of the classes its logits score."""

    devices: tuple[FusedDevice, ...]
    workers: tuple[WorkerRef, ...]
    client_keys: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class GraphInfo:
    """One ONNX graph of the bundle and what it computes in: `fp32`, or `int8` (a QDQ graph
    quantized by `cofc build`), with the build's one line on why (compiler/export/precision.py)."""

    file: str
    precision: Literal["fp32", "int8"]
    note: str


@dataclass(frozen=True)
class Manifest:
    schema: int = field(default=SCHEMA, kw_only=True)  # first in the file, for people reading it
    plan: PlanRef
    device: DeviceRef
    submodel: SubModelInfo
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    preprocess: Preprocess
    precision: str  # what the plan asked for; TensorRT builds its engines at it
    graphs: tuple[GraphInfo, ...]  # what each ONNX graph is
    opset: int
    central: CentralInfo
    fusion: Fusion | None  # the central bundle's, None on workers
    files: dict[str, str]  # every other file of the bundle -> its sha256

    def __post_init__(self) -> None:
        if (self.device.role == "central") != (self.fusion is not None):
            raise SchemaError(
                "fusion",
                f"a {self.device.role} bundle must "
                f"{'' if self.device.role == 'central' else 'not '}describe the fusion",
            )


def write_manifest(folder: Path, manifest: Manifest) -> str:
    """Write manifest.json and manifest.sha256 into `folder`; the digest is the bundle's identity."""
    (folder / MANIFEST).write_text(json.dumps(to_json(manifest), indent=1))
    digest = sha256_file(folder / MANIFEST)
    (folder / DIGEST).write_text(f"{digest}  {MANIFEST}\n")
    return digest


def read_manifest(path: Path) -> Manifest:
    """The manifest in `path`, checked field by field against the schema this cofc reads."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = data.get("schema")
    if version is None:
        raise BundleError(
            f"{path} has no schema version: the bundle was built by an older cofc; rebuild it with `cofc build`"
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path}: schema: expected an integer, got {version!r}")
    if version not in READABLE:
        advice = (
            "built by an older cofc; rebuild it with `cofc build`"
            if version < SCHEMA
            else "built by a newer cofc; upgrade cofc on this device"
        )
        raise BundleError(
            f"{path}: schema: version {version} is not the one this cofc reads ({SCHEMA}): the bundle was {advice}"
        )
    for older, upgrade in _UPGRADES:
        if version <= older:
            data = upgrade(data)
    try:
        return from_json(Manifest, data)
    except SchemaError as exc:
        raise BundleError(f"{path}: {exc}") from None


def _upgrade_4(data: dict[str, Any]) -> dict[str, Any]:
    """A schema 4 manifest read as schema 5, keeping its version: its graphs are the FP32 exports
    (INT8 only ever meant TensorRT engines then). The digest pins the file, so it is not rewritten."""
    files = data.get("files")
    names = [n for n in ("backbone.onnx", "aggregator.onnx") if isinstance(files, dict) and n in files]
    graphs = [{"file": n, "precision": "fp32", "note": "schema 4 bundle: FP32 graph"} for n in names]
    return {**data, "graphs": graphs}


def _upgrade_5(data: dict[str, Any]) -> dict[str, Any]:
    """A schema 5 (or older) manifest read as schema 6, keeping its version: its workers'
    expected t1 + t2 unknown, and a text bundle built before sentence pairs reads one text."""
    preprocess = data.get("preprocess")
    if isinstance(preprocess, dict) and preprocess.get("kind") == "text":
        data = {**data, "preprocess": {"pair_column": None, **preprocess}}
    fusion = data.get("fusion")
    if not isinstance(fusion, dict) or not isinstance(fusion.get("workers"), list):
        return data  # a worker's manifest (no fusion), or one the schema check will refuse
    workers = [{"expected_ms": None, **w} if isinstance(w, dict) else w for w in fusion["workers"]]
    return {**data, "fusion": {**fusion, "workers": workers}}


_UPGRADES = ((4, _upgrade_4), (5, _upgrade_5))  # (the last version an upgrade is for, the upgrade)
