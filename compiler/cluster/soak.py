"""`cofc bench BUILD_DIR --soak MINUTES`: the built plan under steady load for a long while.

Starts central and one worker per device (`cofc run`, each its own process), sends real test
inputs at a fixed rate (at most `window` in flight) for MINUTES, kills a worker every
`kill_every_s` (round robin) and restarts it `RESTART_AFTER_S` later, and samples every SAMPLE_S
each process's resident memory (VmRSS from /proc/PID/status) and what central holds (its `stats`
answer: queued and pending requests, the straggler records). It reports whether anything grew:
each device's RSS at the end against its RSS after warm-up, the tables at the end, requests lost
(no answer at all, where an explicit error is an answer), and the end-to-end latency at the client.
No worker is killed in the last fifth, so the end samples see every process settled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cofc.compiler.cluster.bench import COFC, JOIN_TIMEOUT_S
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.errors import CofcError
from cofc.runtime._typed_json import to_json
from cofc.runtime.bundle import load_bundle
from cofc.runtime.client import Answer, Client
from cofc.runtime.preprocess import Preprocessor

SOAK = "soak.json"  # in the build folder
SAMPLE_S = 5.0
RESTART_AFTER_S = 3.0
TOTAL_TIMEOUT_S = 30.0  # a request unanswered this long is lost
RSS_TOLERANCE = 0.10  # the issue's: each process within 10% of its RSS after warm-up


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB (0 once it is gone): /proc, no psutil."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the soak began
    rss_kib: dict[str, int]  # device (and "client") -> its process's RSS
    answered: int  # by central so far
    queued: int
    pending: int
    straggler_entries: int  # t1+t2 values held over all worker records
    rejected: int  # messages central refused so far (a killed worker's late features among them)


@dataclass(frozen=True)
class Outcome:
    """What the soak keeps of an answer (not its logits: the client's memory is measured too)."""

    elapsed_ms: float
    degraded: bool
    error: str | None  # the error's kind

    @classmethod
    def of(cls, a: Answer) -> Outcome:
        return cls(a.elapsed_ms, a.degraded, None if a.error is None else a.error.split(":", 1)[0])


@dataclass(frozen=True)
class Memory:
    process: str
    warm_kib: int  # the first sample after warm-up
    end_kib: int  # the last sample
    max_kib: int

    @property
    def change(self) -> float:
        return self.end_kib / self.warm_kib - 1


@dataclass(frozen=True)
class SoakResult:
    command: str
    minutes: float
    rate_per_s: float
    window: int
    deadline_ms: float
    warmup_s: float
    kills: int
    sent: int
    answered: int  # with logits, degraded or not
    degraded: int
    errors: dict[str, int]  # explicit error answers by kind
    lost: int  # no answer at all within TOTAL_TIMEOUT_S
    p50_ms: float  # client-side, submission to answer, answers with logits
    p99_ms: float
    max_ms: float
    memory: list[Memory]
    samples: list[Sample] = field(default_factory=list)

    @property
    def steady(self) -> bool:
        """Nothing lost and no process's memory moved more than RSS_TOLERANCE after warm-up."""
        return self.lost == 0 and all(abs(m.change) <= RSS_TOLERANCE for m in self.memory)


class Cluster:
    """Central and its workers as `cofc run` processes; a worker can be killed and restarted."""

    def __init__(self, bundles: dict[str, Path], central: str):
        self.bundles, self.central = bundles, central
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in bundles:
            self.start(name)

    def start(self, name: str) -> None:
        argv = [*COFC, "run", "--bundle", str(self.bundles[name])]
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def close(self) -> None:
        for name in self.procs:
            self.kill(name)


def soak(
    build_dir: Path, minutes: float, rate_per_s: float = 10.0, window: int = 8, kill_every_s: float = 60.0
) -> SoakResult:
    build_dir = Path(build_dir)
    plan = load_plan(build_dir / PLAN_COPY)
    paths = {d.name: build_dir / "bundle" / d.name for d in plan.devices}
    central = load_bundle(paths[plan.central.name])
    prep = Preprocessor.for_bundle(central)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(64, seed=1)
    inputs = [prep.pack(test.inputs[i : i + 1]) for i in range(len(test))]
    workers = [d.name for d in plan.devices if d.name != plan.central.name]
    duration, warmup = minutes * 60, min(60.0, minutes * 15)
    cluster = Cluster(paths, plan.central.name)
    answers: list[Outcome] = []
    samples: list[Sample] = []
    kills = sent = 0
    with contextlib.closing(cluster), Client.for_bundle(central, total_timeout_s=TOTAL_TIMEOUT_S) as client:
        stats_client = Client.for_bundle(central)
        with contextlib.closing(stats_client):
            client.wait_until_complete(inputs[0], JOIN_TIMEOUT_S)
            began = time.monotonic()
            next_send, next_sample, next_kill = began, began, began + kill_every_s
            restart: tuple[str, float] | None = None
            while (now := time.monotonic()) < began + duration or client.outstanding:
                sending, killing = now < began + duration, now < began + 0.8 * duration and restart is None
                if sending and now >= next_send and len(client.outstanding) < window:
                    client.submit(inputs[sent % len(inputs)], timeout_s=1.0)
                    sent, next_send = sent + 1, max(next_send + 1 / rate_per_s, now - 1.0)
                if now >= next_sample:
                    samples.append(_sample(now - began, cluster, stats_client))
                    next_sample += SAMPLE_S
                if killing and now >= next_kill:
                    victim = workers[kills % len(workers)]
                    cluster.kill(victim)
                    kills, restart, next_kill = kills + 1, (victim, now + RESTART_AFTER_S), next_kill + kill_every_s
                if restart is not None and now >= restart[1]:
                    cluster.start(restart[0])
                    restart = None
                wake = [next_sample, next_kill if killing else next_sample, restart[1] if restart else next_sample]
                if sending and len(client.outstanding) < window:
                    wake.append(next_send)
                if (answer := client.receive(max(0.001, min(wake) - time.monotonic()))) is not None:
                    answers.append(Outcome.of(answer))
            samples.append(_sample(time.monotonic() - began, cluster, stats_client))
    setup = Setup(minutes, rate_per_s, window, central.manifest.central.deadline_ms, warmup, kills)
    return setup.summarise(sent, answers, samples, build_dir)


def _sample(t_s: float, cluster: Cluster, stats_client: Client) -> Sample:
    rss = {name: rss_kib(p.pid) for name, p in cluster.procs.items()}
    rss["client"] = rss_kib(os.getpid())
    stats = stats_client.stats()
    if stats is None:
        raise CofcError(f"central did not answer its stats request at {t_s:.0f} s")
    entries = sum(w.recent + w.fast for w in stats.workers)
    return Sample(t_s, rss, stats.answered, stats.queued, stats.pending, entries, sum(stats.rejected.values()))


@dataclass(frozen=True)
class Setup:
    """How the soak ran: what its result repeats beside the measurements."""

    minutes: float
    rate_per_s: float
    window: int
    deadline_ms: float
    warmup_s: float
    kills: int

    def summarise(self, sent: int, answers: list[Outcome], samples: list[Sample], build_dir: Path) -> SoakResult:
        """The soak's answers and samples as its SoakResult, also written to BUILD_DIR/soak.json."""
        errors: dict[str, int] = {}
        for a in answers:
            if a.error is not None:
                errors[a.error] = errors.get(a.error, 0) + 1
        ok = [a.elapsed_ms for a in answers if a.error is None]
        if not ok:
            raise CofcError("the soak got no answer with logits")
        warm = next((s for s in samples if s.t_s >= self.warmup_s), samples[-1])
        memory = [
            Memory(p, warm.rss_kib[p], samples[-1].rss_kib[p], max(s.rss_kib[p] for s in samples)) for p in warm.rss_kib
        ]
        result = SoakResult(
            command=f"cofc bench {build_dir} --soak {self.minutes:g} --rate {self.rate_per_s:g}",
            minutes=self.minutes,
            rate_per_s=self.rate_per_s,
            window=self.window,
            deadline_ms=self.deadline_ms,
            warmup_s=self.warmup_s,
            kills=self.kills,
            sent=sent,
            answered=len(ok),
            degraded=sum(a.degraded for a in answers if a.error is None),
            errors={k: v for k, v in errors.items() if k != "timeout"},
            lost=errors.get("timeout", 0) + sent - len(answers),
            p50_ms=float(np.percentile(ok, 50)),
            p99_ms=float(np.percentile(ok, 99)),
            max_ms=max(ok),
            memory=memory,
            samples=samples,
        )
        (build_dir / SOAK).write_text(json.dumps(to_json(result), indent=1))
        return result


def format_soak(r: SoakResult) -> str:
    lines = [
        f"soak of {r.minutes:g} min at {r.rate_per_s:g} requests/s ({r.window} in flight at most), "
        f"a worker killed {r.kills} times: {r.sent} sent, {r.answered} answered ({r.degraded} degraded), "
        f"errors {r.errors or 'none'}, {r.lost} lost",
        f"end to end at the client: median {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms "
        f"(deadline {r.deadline_ms:g} ms)",
        f"{'process':10s} {'RSS after warm-up':>18s} {'at the end':>11s} {'max':>9s} {'change':>7s}",
    ]
    for m in r.memory:
        lines.append(
            f"{m.process:10s} {m.warm_kib / 1024:14.1f} MiB {m.end_kib / 1024:7.1f} MiB "
            f"{m.max_kib / 1024:5.1f} MiB {m.change:+7.1%}"
        )
    last = r.samples[-1]
    lines.append(
        f"central at the end: {last.queued} queued, {last.pending} pending, {last.straggler_entries} straggler "
        f"entries; max over the soak {max(s.queued + s.pending for s in r.samples)} requests held, "
        f"{max(s.straggler_entries for s in r.samples)} entries"
    )
    lines.append(f"steady (0 lost, every RSS within {RSS_TOLERANCE:.0%} of warm-up): {'yes' if r.steady else 'NO'}")
    return "\n".join(lines)
