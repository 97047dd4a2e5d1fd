"""Shared fixtures: the model families, and one small plan built once per session with `cofc build`
(the build, export and runtime tests all read it; none of them may change it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_port, make_plan, run_cofc


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests are slow ones: whatever is marked e2e, or uses the session-built plan
    (directly or through another fixture), is also marked slow, so `-m "not slow"` leaves it out
    (markers: setup.cfg)."""
    for item in items:
        if item.get_closest_marker("e2e") or "built" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=["vit", "bert", "gpt2"])
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The build folder of the small ViT plan (`tests.helpers.PLAN`), INT8 so that its bundles
    carry calibration inputs too (ONNX Runtime runs FP32 whatever the plan says)."""
    folder = tmp_path_factory.mktemp("built")
    plan = make_plan(folder, port=free_port(), precision="int8")
    result = run_cofc("build", str(plan))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ESTIMATED latency table" in result.stderr  # the user is told
    return folder / "out"
