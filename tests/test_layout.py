"""Package layout and CLI: import names, torch-free runtime, every --help."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cofc

COMMANDS = ["profile", "build", "run", "bench", "baseline", "frontier", "inspect"]
HEAVY = ("torch", "timm", "transformers")
# Packages every module of which must import without torch: the device side, and the planner and
# plan reader that run before any model is loaded.
TORCH_FREE = ("cofc.runtime", "cofc.compiler.planning", "cofc.compiler.plan")
# The exceptions, each with its reason.
TORCH_SIDE = {"cofc.compiler.plan.prepare": "loads the plan's teacher and data (the build's first stage)"}
# Modules that only import where their own library is installed: skipped when importing it fails.
NEEDS_LIBRARY = {"cofc.runtime.backends.tensorrt": ("tensorrt", "cuda")}


def test_import_names_live_under_cofc(tmp_path):
    """The folders are compiler/ and runtime/, the import names cofc.compiler and cofc.runtime;
    no bare `compiler` or `runtime` package is importable from outside the repository."""
    code = (
        "import importlib.util, cofc.compiler, cofc.runtime;"
        "print(cofc.compiler.__file__); print(cofc.runtime.__file__);"
        "print(importlib.util.find_spec('compiler'), importlib.util.find_spec('runtime'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout.splitlines()
    assert Path(out[0]) == REPO / "compiler/__init__.py"
    assert Path(out[1]) == REPO / "runtime/__init__.py"
    assert out[2] == "None None"


WALK = f"""
import importlib, json, pkgutil, sys
for heavy in {HEAVY!r}:
    sys.modules[heavy] = None
imported, skipped = [], []
for package in {TORCH_FREE!r}:
    root = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name in {sorted(TORCH_SIDE)!r}:
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name.split(".")[0] not in {NEEDS_LIBRARY!r}.get(info.name, ()):
                raise
            skipped.append(info.name)
        else:
            imported.append(info.name)
from cofc.cli import cli
cli(["run", "--help"], standalone_mode=False)
print(json.dumps({{"imported": imported, "skipped": skipped}}))
"""


def test_runtime_planner_and_cli_import_no_torch():
    """With torch, timm and transformers made unimportable, every module of the runtime, the
    planner and the plan reader imports (found by walking the packages, so a new module is
    checked too), and `cofc run --help` works."""
    result = subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--bundle" in result.stdout
    found = json.loads(result.stdout.splitlines()[-1])
    assert set(found["skipped"]) <= set(NEEDS_LIBRARY)
    assert {
        "cofc.runtime.serve",
        "cofc.runtime.backends.ort",
        "cofc.compiler.planning.search",
        "cofc.compiler.planning.slices",
        "cofc.compiler.plan.loader",
    } <= set(found["imported"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command):
    result = run_cofc(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: cofc {command}" in result.stdout and len(result.stdout.splitlines()) > 4


def test_top_level_help_lists_commands():
    result = run_cofc("--help")
    assert result.returncode == 0
    assert all(c in result.stdout for c in COMMANDS)


@pytest.mark.parametrize(
    "args,words",
    [
        (["profile", "--teacher", "missing.pt", "--out", "x.json"], "does not exist"),
        (["run", "--bundle", "nowhere"], "not a cofc bundle"),
        (["bench", "nowhere"], "no report.json"),
        (["inspect", "nowhere"], "not a cofc bundle"),
        (["build", "missing.yaml"], "cannot read"),
    ],
)
def test_bad_input_fails_with_one_clear_line(args, words, tmp_path):
    result = run_cofc(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "a failed command must not leave files behind"


@pytest.mark.slow
def test_device_install_has_no_torch(tmp_path):
    """A device installs the base package alone: numpy, pyzmq, onnxruntime, no torch. Build such a
    venv for real and run the runtime's entry points in it."""
    env_dir = tmp_path / "device-venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    probe = (
        "import importlib.util, cofc.runtime.serve, onnxruntime, zmq;"
        "print([m for m in ('torch', 'timm', 'transformers') if importlib.util.find_spec(m)])"
    )
    # Run from outside the repository, as on a device: the source folder cofc/ must not shadow
    # the installed package.
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
    result = subprocess.run(
        [str(env_dir / "bin" / "cofc"), "run", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0 and "--bundle" in result.stdout
