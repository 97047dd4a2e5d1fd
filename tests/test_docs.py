"""The user's documents: README.md, docs/ and profiles/README.md.

docs/results.md (and README.md's generated block) are what tools/results.py writes from the
committed result files; README.md stays short; nothing points outside the repository; every
relative link and every repository path named in inline code exists.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from cofc.compiler.cluster.bench_result import BenchResult
from cofc.runtime._typed_json import SchemaError, to_json
from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("results_tool", REPO / "tools" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)

README_MAX_LINES = 200
TOP_LEVEL = ("cofc", "compiler", "runtime", "tools", "examples", "profiles", "docs", "tests")


def documents() -> list[Path]:
    """Every Markdown document a user reads."""
    return [REPO / "README.md", REPO / "profiles" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


PLOTS = {".png"}  # images results.md links to (a frontier's plot): no text in them to check


def docs_files() -> list[Path]:
    """README.md and every text file under docs/."""
    files = (p for p in (REPO / "docs").rglob("*") if p.is_file() and p.suffix not in PLOTS)
    return [REPO / "README.md", *sorted(files)]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# -- (a) the results page is generated ------------------------------------------------------------
def copy_sources(dst: Path) -> None:
    """What tools/results.py reads and writes, copied into `dst` as a stand-in repository."""
    shutil.copy2(REPO / "README.md", dst / "README.md")
    shutil.copytree(REPO / "docs", dst / "docs")
    shutil.copytree(REPO / "examples" / "teachers", dst / "examples" / "teachers")


def test_results_page_and_readme_block_are_what_the_generator_writes():
    assert results.stale(REPO) == [], "run: .venv/bin/python tools/results.py"


def test_the_generator_is_deterministic():
    assert results.expected(REPO) == results.expected(REPO)


def test_check_fails_on_a_hand_edit(tmp_path):
    copy_sources(tmp_path)
    assert results.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "results.md"
    page.write_text(page.read_text().replace("%", "0%", 1))
    assert results.main(["--check", "--root", str(tmp_path)]) == 1
    assert results.main(["--root", str(tmp_path)]) == 0  # rewrites it ...
    assert results.main(["--check", "--root", str(tmp_path)]) == 0  # ... to the same bytes as before
    assert page.read_text() == (REPO / "docs" / "results.md").read_text()
    readme = tmp_path / "README.md"
    start, end = readme.read_text().split(results.START)
    readme.write_text(start + results.START + end.replace("|", "| x |", 1))
    assert results.stale(tmp_path) == [Path("README.md")]


def test_check_fails_when_a_committed_report_changes(tmp_path):
    folders = results.report_folders(REPO)
    if not folders:
        pytest.skip("no report committed under docs/reports/ yet")
    copy_sources(tmp_path)
    report = tmp_path / rel(folders[0]) / "report.json"
    data = json.loads(report.read_text())
    data["fused"]["accuracy"] = 1.0 - data["fused"]["accuracy"] / 2
    report.write_text(json.dumps(data))
    assert results.stale(tmp_path) == [results.RESULTS]


def test_a_tradeoff_note_is_shown_above_its_table(tmp_path):
    copy_sources(tmp_path)
    folder = tmp_path / rel(results.tradeoff_folders(REPO)[0])
    source = json.loads((folder / "source.json").read_text())
    (folder / "source.json").write_text(json.dumps({**source, "note": "Measured while the fan was off."}))
    page = results.expected(tmp_path)[results.RESULTS]
    section = page.split(f"## Trade-offs: {folder.name}\n", 1)[1]
    assert section.startswith("\nMeasured while the fan was off.\n")


def test_every_committed_report_names_its_command_machine_and_date():
    for folder in results.report_folders(REPO) + results.tradeoff_folders(REPO):
        results.read_source(folder, REPO, results.sources(folder))  # raises when incomplete


def test_every_committed_bench_reads_back_typed_and_unchanged():
    benches = sorted((REPO / "docs" / "reports").glob("*/bench.json"))
    assert benches
    for path in benches:
        data = json.loads(path.read_text())
        result = BenchResult.load(path.parent)
        assert set(result.phases) == set(data["phases"]), path
        if all("nice" in p for p in data["phases"].values()):  # since paced emulation: every field as it was
            teacher = {"precision": "fp32", "fp32_ms": None} | data["teacher"]  # FP32 before INT8 graphs
            assert to_json(result) == {**data, "stream": data.get("stream"), "teacher": teacher}, path
    vit = BenchResult.load(REPO / "docs" / "reports" / "vit")  # before paced emulation: cgroup quotas, no nice
    assert {(p.cpu_emulation, p.nice) for p in vit.phases.values()} == {("cgroup", None)}


def test_a_mistyped_bench_field_is_refused_by_its_path(tmp_path):
    data = json.loads((REPO / "docs" / "reports" / "minilm-20ng" / "bench.json").read_text())
    data["phases"]["mid"]["t1_ms"] = "4.8"
    (tmp_path / "bench.json").write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"^phases\.mid\.t1_ms: expected a number, got a string$"):
        BenchResult.load(tmp_path)


def test_readme_keeps_the_generated_block():
    readme = (REPO / "README.md").read_text()
    assert readme.count(results.START) == 1 and readme.count(results.END) == 1


# -- (b) README.md stays a short document -----------------------------------------------------------
def test_readme_is_at_most_200_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


# -- (c) nothing points outside the repository ------------------------------------------------------
ABSOLUTE = re.compile(r"(?:^|[\s`'\"(\[<=])(/[A-Za-z0-9_.~-]+/[^\s`'\")\]>]*)")
URL = re.compile(r"\b(?:https?|ftp|file)://\S+")
UP = re.compile(r"(?:\.\./)+[^\s`'\")\]>#]*")


def outside_references(text: str, folder: Path) -> list[str]:
    """What in `text` (of a file in `folder`) points outside the repository."""
    found = ["../shared"] if "../shared" in text else []
    found += URL.findall(text)
    found += ABSOLUTE.findall(text)
    for path in UP.findall(text):
        target = (folder / path).resolve()
        if target != REPO and REPO not in target.parents:
            found.append(path)
    return found


def readable_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.name == "report.json":
        # The build records the plan file it started from as an absolute path on its machine;
        # tools/results.py never shows it (source.json names the command instead).
        data = json.loads(text)
        data.get("plan", {}).pop("source", None)
        text = json.dumps(data)
    return text


def test_outside_references_are_found():
    here = REPO / "docs" / "experiments"
    assert outside_references("see ../shared/reference/paper.md", here)
    assert outside_references("[paper](../../../elsewhere/paper.md)", here)
    assert outside_references("data in `/usr/share/datasets/x`", here)
    assert outside_references("<https://example.org/paper>", here)
    assert outside_references("[results](../results.md), 89.78% / 89.09%, t1/t2, Mb/s", here) == []


@pytest.mark.parametrize("path", docs_files(), ids=rel)
def test_nothing_points_outside_the_repository(path):
    assert outside_references(readable_text(path), path.parent) == []


# -- (d) every relative link and named repository path exists ---------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`([^`\n]+)`")


def relative_links(text: str) -> list[str]:
    return [
        t.split("#", 1)[0]
        for t in LINK.findall(text)
        if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
    ]


def named_paths(text: str) -> list[str]:
    """Repository paths named in inline code (`compiler/pipeline/report.py`, in commands too)."""
    words = (w.rstrip(".,;:") for span in CODE.findall(FENCE.sub("", text)) for w in span.split())
    return [w for w in words if "/" in w and w.split("/", 1)[0] in TOP_LEVEL and not re.search(r"[<>*{}$]", w)]


def test_link_and_path_finders():
    text = "[a](docs/x.md#part) [b](https://x.org) [c](#top) `cofc build examples/p.yaml` `OUT/bundle/<d>`"
    assert relative_links(text) == ["docs/x.md"]
    assert named_paths(text + "\n```\nprofiles/missing.json\n```\n") == ["examples/p.yaml"]


@pytest.mark.parametrize("path", documents(), ids=rel)
def test_every_relative_link_exists(path):
    text = path.read_text(encoding="utf-8")
    missing = [t for t in relative_links(text) if not (path.parent / t).exists()]
    assert missing == [], f"{rel(path)} links to missing files"


@pytest.mark.parametrize("path", documents(), ids=rel)
def test_every_repository_path_named_exists(path):
    missing = [p for p in named_paths(path.read_text(encoding="utf-8")) if not (REPO / p).exists()]
    assert missing == [], f"{rel(path)} names paths that do not exist"
