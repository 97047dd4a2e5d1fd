"""Which stages of a build can be reused: a stage's result is kept under a key of exactly what it
reads, so that a change reruns the stages it affects and nothing else.

A stage declares what it reads (`Reads`): plan fields (files the plan names count by their
content, not their path; folders by their files' names, sizes and modification times), the
upstream stages whose results it takes, and the modules it runs.
Its key hashes those plan values, the upstream stages' keys, and the source of every cofc module
it runs together with every cofc module those import (found by reading their imports, lazy ones
included), so that editing `calibration/booster.py` reruns calibrate and what follows it, and
editing a calibration setting leaves importance and search alone.

The key also holds the kind of torch device the build computes on ("cpu" or "cuda"): CUDA rounds
differently, so a stage computed on one kind is never reused by a build on the other, and a
build's numbers all come from the device its report names. Every stage follows a torch stage, so
all of them carry it. Like CPU models, GPU models are not told apart: a build moved to another GPU
reuses its stages.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cofc.compiler.plan import Plan
from cofc.runtime._files import atomic_write_json, sha256_file


@dataclass(frozen=True)
class Reads:
    plan: tuple[str, ...] = ()  # dotted plan fields, e.g. "calibration", "dataset.validation"
    stages: tuple[str, ...] = ()  # upstream stages whose results (or files) it uses
    code: tuple[str, ...] = ()  # modules it runs, e.g. "cofc.compiler.calibration.calibrate"


def _fingerprint(value: Any) -> Any:
    """A JSON-able value that changes when `value` does; a file by its content."""
    if dataclasses.is_dataclass(value):
        return {f.name: _fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, Path):
        if value.is_file():
            return {"sha256": sha256_file(value)}
        if value.is_dir():  # a data or model folder: each file's name, size and time (hashing all would be slow)
            return sorted(
                (str(f.relative_to(value)), f.stat().st_size, f.stat().st_mtime_ns)
                for f in value.rglob("*")
                if f.is_file()
            )
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    return value


def plan_fields(plan: Plan, fields: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for name in fields:
        value: Any = plan
        for part in name.split("."):
            value = getattr(value, part)
        values[name] = _fingerprint(value)
    return values


@cache
def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _type_checking_test(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`: true for the type checker only, never at run time."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` that can run: all but the bodies of `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _type_checking_test(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path) -> set[str]:
    """The cofc modules that module `name` imports anywhere in its body (lazy ones included; those
    under `if TYPE_CHECKING:` left out, since they never run)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _run_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from package import module`
    return {m for m in found if m.split(".")[0] == "cofc" and _module_file(m) is not None}


def module_closure(modules: tuple[str, ...]) -> dict[str, Path]:
    """`modules` and every cofc module they import, transitively: name -> source file."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(_imports(name, path))
    return seen


def source_digest(modules: tuple[str, ...]) -> str:
    """sha256 over the source of `modules` and every cofc module they import, transitively."""
    closure = module_closure(modules)
    digest = hashlib.sha256()
    for name in sorted(closure):
        digest.update(name.encode() + b"\0" + closure[name].read_bytes())
    return digest.hexdigest()


class StageCache:
    """`OUT/stages/<stage>.json`: the key a stage ran under, its seconds and its result (JSON)."""

    def __init__(self, folder: Path, force: bool):
        self.folder, self.force = folder, force

    def key(self, plan: Plan, reads: Reads, upstream_keys: dict[str, str], stage_source: str, device: str) -> str:
        """The hash of what a stage reads, of the stage function's own source, and of the kind of
        torch device it runs on."""
        spelled = {
            "plan": plan_fields(plan, reads.plan),
            "stages": {s: upstream_keys[s] for s in reads.stages},
            "code": source_digest(reads.code),
            "stage": stage_source,
            "device": device,
        }
        return hashlib.sha256(json.dumps(spelled, sort_keys=True).encode()).hexdigest()

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def load(self, stage: str, key: str) -> Stored | None:
        """What `stage` stored, if it ran under `key` (and the build is not forced)."""
        if self.force or not self.path(stage).exists():
            return None
        stored = read_stored(self.path(stage))
        return stored if stored.key == key else None

    def save(self, stage: str, stored: Stored) -> None:
        atomic_write_json(self.path(stage), dataclasses.asdict(stored))


@dataclass(frozen=True)
class Stored:
    """A stage's file: the key it ran under, how long it took, its result as JSON values."""

    key: str
    seconds: float
    result: Any


def read_stored(path: Path) -> Stored:
    return Stored(**json.loads(path.read_text()))


def seed_stages(source: Path, out: Path) -> list[str]:
    """Give a new build folder `out` the stored stages of a sibling build `source` that it lacks,
    so that what both read alike is not computed twice (a frontier's budgets, a baseline beside
    its CoFormer: the teacher's accuracy and the importance ranking depend on neither devices nor
    objective). Safe whatever the two plans: a stage reruns unless its key matches. The names
    of the stages copied."""
    copied = []
    (out / "stages").mkdir(parents=True, exist_ok=True)
    for path in sorted((source / "stages").glob("*.json")):
        target = out / "stages" / path.name
        if not target.exists():
            shutil.copyfile(path, target)
            copied.append(path.stem)
    return copied
