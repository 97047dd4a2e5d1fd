"""Package layout and CLI: import names, torch-free runtime, every --help."""
from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cofc

COMMANDS = ["profile", "build", "run", "bench", "inspect"]
HEAVY = ("torch", "timm", "transformers")
RUNTIME_MODULES = ("backends", "backends.ort", "bundle", "central", "cgroup", "client", "pipeline",
                   "preprocess", "serve", "wire", "worker")


def test_import_names_live_under_cofc(tmp_path):
    """The folders are compiler/ and runtime/, the import names cofc.compiler and cofc.runtime;
    no bare `compiler` or `runtime` package is importable from outside the repository."""
    code = ("import importlib.util, cofc.compiler, cofc.runtime;"
            "print(cofc.compiler.__file__); print(cofc.runtime.__file__);"
            "print(importlib.util.find_spec('compiler'), importlib.util.find_spec('runtime'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         check=True).stdout.splitlines()
    assert Path(out[0]) == REPO / "compiler/__init__.py"
    assert Path(out[1]) == REPO / "runtime/__init__.py"
    assert out[2] == "None None"


def test_runtime_and_cli_import_no_torch():
    """With torch, timm and transformers made unimportable, the runtime and `cofc run --help` work."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in HEAVY)
    modules = ", ".join(f"cofc.runtime.{m}" for m in RUNTIME_MODULES)
    code = (f"import sys; {block}; import {modules}; from cofc.cli import cli;"
            "cli(['run', '--help'], standalone_mode=False)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--bundle" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command):
    result = run_cofc(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: cofc {command}" in result.stdout and len(result.stdout.splitlines()) > 4


def test_top_level_help_lists_commands():
    result = run_cofc("--help")
    assert result.returncode == 0
    assert all(c in result.stdout for c in COMMANDS)


@pytest.mark.parametrize("args,words", [
    (["profile", "--teacher", "missing.pt", "--out", "x.json"], "does not exist"),
    (["run", "--bundle", "nowhere"], "not a cofc bundle"),
    (["bench", "nowhere"], "no report.json"),
    (["inspect", "nowhere"], "not a cofc bundle"),
    (["build", "missing.yaml"], "cannot read"),
])
def test_bad_input_fails_with_one_clear_line(args, words, tmp_path):
    result = run_cofc(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "a failed command must not leave files behind"


def test_device_install_has_no_torch(tmp_path):
    """A device installs the base package alone: numpy, pyzmq, onnxruntime, no torch. Build such a
    venv for real and run the runtime's entry points in it."""
    env_dir = tmp_path / "device-venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
                   check=True, capture_output=True, timeout=900)
    probe = ("import importlib.util, cofc.runtime.serve, onnxruntime, zmq;"
             "print([m for m in ('torch', 'timm', 'transformers') if importlib.util.find_spec(m)])")
    # Run from outside the repository, as on a device: the source folder cofc/ must not shadow
    # the installed package.
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
    result = subprocess.run([str(env_dir / "bin" / "cofc"), "run", "--help"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0 and "--bundle" in result.stdout
