"""The typed manifest on real bundles of the session-built plan: what `cofc build` writes reads back
field for field, and a manifest of another schema version, with a missing field or a field of the
wrong type is refused naming the file and the field (one line from the CLI, no traceback)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cofc.compiler.models.data import Expects
from cofc.compiler.pipeline.report import load_report
from cofc.errors import CofcError
from cofc.runtime._files import sha256_file
from cofc.runtime.bundle import load_bundle
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.manifest import (
    DIGEST,
    MANIFEST,
    SCHEMA,
    BundleError,
    ImagePreprocess,
    Manifest,
    read_manifest,
    write_manifest,
)
from tests.helpers import run_cofc


def test_built_manifests_round_trip(built, tmp_path):
    """Reading and writing again gives the same bytes, hence the same digest the build pinned."""
    bundles = {b.device: b for b in (load_bundle(p) for p in (built / "bundle").iterdir())}
    for name, bundle in bundles.items():
        m = bundle.manifest
        assert isinstance(m, Manifest) and m.schema == SCHEMA and m.device.name == name
        assert write_manifest(tmp_path, m) == bundle.digest
        assert read_manifest(tmp_path / MANIFEST) == m
    central = bundles["orin"].manifest
    assert central.device.role == "central" and central.fusion is not None
    assert [d.name for d in central.fusion.devices] == ["orin", "tx2", "nano"]
    assert {w.name: w.digest for w in central.fusion.workers} == {n: bundles[n].digest for n in ("tx2", "nano")}
    assert {w.name: w.public_key for w in central.fusion.workers} == {
        n: bundles[n].keys().public for n in ("tx2", "nano")
    }
    assert central.fusion.client_keys == (bundles["orin"].client_keys().public,)
    assert len(central.fusion.classes) == 10
    for worker in ("tx2", "nano"):
        m = bundles[worker].manifest
        assert m.fusion is None and m.central == central.central
        assert isinstance(m.central.endpoint, Endpoint) and m.central.public_key == bundles["orin"].keys().public
    assert isinstance(central.preprocess, ImagePreprocess)
    assert central.inputs[0].shape == (None, 1, 28, 28) and central.inputs[0].dtype == "float32"
    assert central.submodel.feature_dim == central.submodel.spec.dim == central.fusion.devices[0].feature_dim


def _retouched(built: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the central bundle whose manifest `edit` changed, with manifest.sha256 updated so
    that the manifest's content, not its hash, is what gets refused."""
    copy = tmp_path / "orin"
    shutil.copytree(built / "bundle" / "orin", copy)
    data = json.loads((copy / MANIFEST).read_text())
    edit(data)
    (copy / MANIFEST).write_text(json.dumps(data, indent=1))
    (copy / DIGEST).write_text(f"{sha256_file(copy / MANIFEST)}  {MANIFEST}\n")
    return copy


def test_central_expects_each_worker_at_its_predicted_pace(built):
    """A worker's expected t1+t2 (what central paces its probes by) is its own predicted path: its
    compute plus the transfer of its feature, within the report's t2 (which adds any wait at
    central for a worker that finishes sooner)."""
    report = load_report(built)
    workers = load_bundle(built / "bundle" / "orin").fusion.workers
    assert [w.name for w in workers] == ["tx2", "nano"]
    for worker in workers:
        device = next(d for d in report.devices if d.name == worker.name)
        assert worker.expected_ms is not None
        assert device.t1_ms < worker.expected_ms <= device.t1_ms + device.t2_ms + 1e-9


def test_schema_5_bundles_load_without_expected_paces(built, tmp_path):
    def schema_5(data: dict) -> None:
        data["schema"] = 5
        for worker in data["fusion"]["workers"]:
            del worker["expected_ms"]

    bundle = load_bundle(_retouched(built, tmp_path, schema_5))
    assert bundle.manifest.schema == 5
    assert [w.expected_ms for w in bundle.fusion.workers] == [None, None]


def _old_format(data: dict[str, Any]) -> None:
    del data["schema"]
    data["format"] = "cofc-bundle/1"


@pytest.mark.parametrize(
    "edit,words",
    [
        (lambda m: m.update(schema=99), ["schema: version 99", "newer cofc"]),
        (lambda m: m.update(schema=1), ["schema: version 1", "rebuild it with `cofc build`"]),
        (lambda m: m.update(schema="2"), ["schema: expected an integer"]),
        (_old_format, ["no schema version", "older cofc", "rebuild it with `cofc build`"]),
        (lambda m: m["central"].pop("public_key"), ["central.public_key: missing"]),
        (lambda m: m["fusion"]["workers"][1].pop("digest"), ["fusion.workers[1].digest: missing"]),
        (lambda m: m["device"].update(index="0"), ["device.index: expected an integer, got a string"]),
        (lambda m: m["inputs"][0].update(shape=[None, 1, 28.5, 28]), ["inputs[0].shape[2]: expected an integer"]),
        (lambda m: m["central"].update(endpoint="tcp://orin"), ["central.endpoint: bad endpoint 'tcp://orin'"]),
        (lambda m: m["device"].update(role="boss"), ["device.role: 'boss' is not one of 'central', 'worker'"]),
        (lambda m: m["preprocess"].update(kind="audio"), ["preprocess.kind: 'audio' is not one of"]),
        (lambda m: m.update(fusion=None), ["fusion: a central bundle must describe the fusion"]),
        (lambda m: m.update(surprise=1), ["surprise: unexpected field"]),
    ],
)
def test_bad_manifest_is_refused_naming_file_and_field(built, tmp_path, edit, words):
    copy = _retouched(built, tmp_path, edit)
    with pytest.raises(BundleError) as caught:
        load_bundle(copy)
    message = str(caught.value)
    assert message.startswith(str(copy / MANIFEST)) and "\n" not in message
    for word in words:
        assert word in message


def test_old_bundle_is_refused_by_the_cli_in_one_line(built, tmp_path):
    copy = _retouched(built, tmp_path, _old_format)
    for args in (["inspect", str(copy)], ["run", "--bundle", str(copy)]):
        result = run_cofc(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and "rebuild it with `cofc build`" in result.stderr


def test_a_worker_manifest_cannot_say_what_the_deployment_expects(built):
    """Only central's manifest names the classes: a worker's is refused in one line, not an AttributeError."""
    with pytest.raises(CofcError, match="'tx2' is a worker's"):
        Expects.of_manifest(load_bundle(built / "bundle" / "tx2").manifest)
    assert len(Expects.of_manifest(load_bundle(built / "bundle" / "orin").manifest).classes) == 10
