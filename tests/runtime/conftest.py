"""Fixtures of the runtime tests: the session-built plan's bundles, and its devices running as
separate `cofc run` processes over loopback."""

from __future__ import annotations

import pytest

from cofc.runtime.bundle import load_bundle
from tests.runtime.cluster import start


@pytest.fixture(scope="module")
def bundles(built) -> dict:
    return {b.name: load_bundle(b) for b in (built / "bundle").iterdir()}


@pytest.fixture
def cluster(bundles):
    procs = {"orin": start(bundles["orin"]), "tx2": start(bundles["tx2"]), "nano": start(bundles["nano"])}
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
        p.wait()
