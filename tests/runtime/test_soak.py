"""`cofc bench --soak` (issue #33, item 4), short: requests at a fixed rate while a worker is killed
and restarted, then stopped and resumed, then central is killed and restarted, with an impostor
holding the client key passing for a worker throughout; every request answered with the local
pipeline's logits, no request to the impostor, no answer late but those central's restart held, a
resumed worker waited for again within two deadlines, the memory of each process and central's
tables sampled."""

from __future__ import annotations

import json
import shutil

from cofc.compiler.cluster.soak import SOAK
from tests.helpers import run_cofc


def test_soak_loses_nothing_through_worker_and_central_faults(built, tmp_path):
    out = shutil.copytree(built, tmp_path / "out")  # the soak writes soak.json; `built` stays as it is
    result = run_cofc("bench", str(out), "--soak", "0.35", "--rate", "20", "--kill-every", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lost" in result.stdout and "p99" in result.stdout, result.stdout
    soak = json.loads((out / SOAK).read_text())
    setup = soak["setup"]
    assert setup["kills"] == setup["stops"] == setup["central_restarts"] == 1 and soak["lost"] == 0, soak
    assert soak["answered"] + sum(soak["errors"].values()) == soak["sent"] >= 0.8 * 0.35 * 60 * 20
    assert soak["disagreeing"] == 0 and soak["impostor_requests"] == 0 < soak["impostor_sent"]
    assert soak["late"] == [], soak["late"]  # none later than 1.2 x deadline + 50 ms but central's restart's
    assert len(soak["central_out_s"]) == 1 and 0 < soak["waited_out_central"] <= 8  # those in flight
    # each stopped worker was waited for again within two deadlines of its resumption
    assert len(soak["taken_back_s"]) == setup["stops"]
    assert all(t <= 2 * setup["deadline_ms"] / 1e3 for t in soak["taken_back_s"]), soak["taken_back_s"]
    # every fault undone, in turn, in time order
    events = [(f["event"], f["process"]) for f in soak["faults"]]
    worker = events[0][1]
    assert events == [
        ("kill", worker),
        ("restart", worker),
        ("stop", worker),
        ("resume", worker),
        ("kill", "orin"),
        ("restart", "orin"),
    ]
    assert [f["at_s"] for f in soak["faults"]] == sorted(f["at_s"] for f in soak["faults"])
    samples = soak["samples"]
    assert len(samples) >= 4 and all(rss > 0 for s in samples for rss in s["rss_kib"].values())
    assert set(samples[0]["rss_kib"]) == {"orin", "tx2", "nano", "client"}
    last = samples[-1]
    assert last["queued"] == last["pending"] == 0  # everything answered: central holds nothing
