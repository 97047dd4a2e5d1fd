"""Run mypy over the package as it is imported (`cofc`, `cofc.compiler`, `cofc.runtime`).

setup.cfg maps the folders compiler/ and runtime/ to `cofc.compiler` and `cofc.runtime`, a layout that
the editable install resolves with an import hook mypy cannot follow. So this lays the package out as
it is installed, in links under .mypy_cache/, checks it there with pyproject.toml's settings, and
prints every path as the repository's own file.

  .venv/bin/python tools/typecheck.py        # exit status and output are mypy's
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".mypy_cache" / "package-tree"
# import name -> folder, as setup.cfg's package_dir says
FOLDERS = {"cofc": ROOT / "cofc", "cofc/compiler": ROOT / "compiler", "cofc/runtime": ROOT / "runtime"}


def lay_out_package() -> Path:
    """Links under TREE that give every module the path its import name says; returns TREE."""
    (TREE / "cofc").mkdir(parents=True, exist_ok=True)
    for entry in (TREE / "cofc").iterdir():
        if entry.is_symlink():
            entry.unlink()
    for source in FOLDERS["cofc"].iterdir():
        if source.suffix == ".py":
            (TREE / "cofc" / source.name).symlink_to(source)
    for name in ("compiler", "runtime"):
        (TREE / "cofc" / name).symlink_to(FOLDERS[f"cofc/{name}"], target_is_directory=True)
    return TREE


def main() -> int:
    tree = lay_out_package()
    env = {**os.environ, "MYPYPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "cofc"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    prefixes = [(str(tree / "cofc" / name) + "/", f"{name}/") for name in ("compiler", "runtime")]
    prefixes += [(str(tree / "cofc") + "/", "cofc/")]
    out = done.stdout + done.stderr
    for linked, real in prefixes:
        out = out.replace(linked, real).replace(os.path.relpath(linked, ROOT) + "/", real)
    sys.stdout.write(out)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
