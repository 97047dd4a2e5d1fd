"""Whoever opens a backend closes it: a backend used in `with` refuses to run afterwards, and the
local pipeline, central and a worker release every backend they opened when their `with` ends."""

from __future__ import annotations

import numpy as np
import pytest

from cofc.errors import CofcError
from cofc.runtime.backends import BackendClosedError, open_backend
from cofc.runtime.bundle import load_bundle
from cofc.runtime.central import Central
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.worker import Worker

IMAGES = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def bundles(built) -> dict:
    return {b.name: load_bundle(b) for b in (built / "bundle").iterdir()}


def _refuses_to_run(backend) -> None:
    feeds = {s.name: np.zeros(s.concrete(1), s.dtype) for s in backend.inputs}
    assert backend.closed
    with pytest.raises(BackendClosedError, match=f"{backend.model_path.name} is closed"):
        backend.run(feeds)


def test_backend_closed_after_with_refuses_to_run(bundles):
    path = bundles["tx2"].file("backbone.onnx")
    with open_backend("onnxruntime", path) as backend:
        feeds = {s.name: np.zeros(s.concrete(2), s.dtype) for s in backend.inputs}
        assert next(iter(backend.run(feeds).values())).shape[0] == 2
    _refuses_to_run(backend)
    backend.close()  # closing again is harmless
    _refuses_to_run(backend)


def test_local_pipeline_closes_every_backend(bundles):
    with LocalPipeline(list(bundles.values())) as pipeline:
        owned = [*pipeline.backbones, pipeline.aggregator]
        assert pipeline(IMAGES).shape == (4, 10) and not any(b.closed for b in owned)
    assert len(owned) == 4
    for backend in owned:
        _refuses_to_run(backend)


def test_central_and_worker_close_their_backends(bundles):
    with Central(bundles["orin"]) as central, Worker(bundles["tx2"]) as worker:
        owned = [central.engine, central.aggregator, worker.engine]
        assert not any(b.closed for b in owned)
    for backend in owned:
        _refuses_to_run(backend)


def test_roles_are_checked_before_anything_opens(bundles):
    with pytest.raises(CofcError, match="not the central one"):
        Central(bundles["tx2"])
    with pytest.raises(CofcError, match="not a worker's"):
        Worker(bundles["orin"])
