"""`cofc bench --stream` (issue #18, item 4): a pipelined stream's answers per second against what
the slowest stage allows, as a user runs it."""

from __future__ import annotations

import json
import shutil

from tests.helpers import run_cofc


def test_bench_stream_reports_rate_against_slowest_stage(built, tmp_path):
    build = tmp_path / "out"
    shutil.copytree(built, build)  # bench writes bench.json into the build folder; the fixture stays as built
    result = run_cofc("bench", str(build), "-n", "100", "--stream", "--window", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "answers/s" in result.stdout and "ratio" in result.stdout
    s = json.loads((build / "bench.json").read_text())["stream"]
    assert s["answers"] == 100 and s["errors"] == 0
    assert s["slowest_stage"] in {"orin", "tx2", "nano", "t3 (fuse)"}
    for key in ("answers_per_s", "bound_per_s", "slowest_stage_ms", "ratio", "seconds"):
        assert s[key] > 0, key
    # On an idle machine the ratio is about 0.9 on loopback (0.87 measured while a build ran on
    # both cores); under load it is not a stable bound, so it is reported, not asserted.
    print(f"stream: {s['answers_per_s']:.0f}/s of {s['bound_per_s']:.0f}/s, ratio {s['ratio']:.2f}")
