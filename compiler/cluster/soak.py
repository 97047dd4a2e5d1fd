"""`cofc bench BUILD_DIR --soak MINUTES`: the built plan under steady load for a long while.

Starts central and one worker per device (`cofc run`, each its own process), sends real test
inputs at a fixed rate (at most `window` in flight) for MINUTES, and every `kill_every_s` faults a
worker (round robin), the faults taking turns: killed and restarted `RESTART_AFTER_S` later, or
stopped (SIGSTOP) for `STOP_S`, short of central's alive window, so that it stays joined but misses
its deadlines, then resumed; central's stats are then polled until it waits for that worker again
(the time it took back a resumed worker). It samples every SAMPLE_S each process's resident memory
(VmRSS from /proc/PID/status) and what central holds (its `stats` answer: queued and pending
requests, the straggler records), and reports whether anything grew: each device's RSS at the end
against its RSS after warm-up, the tables at the end, requests lost (no answer at all, where an
explicit error is an answer), the end-to-end latency at the client and the answers later than
1.2 x the deadline + 50 ms. No worker is faulted in the last fifth, so the end samples see every
process settled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
STOP_S = 1.0  # a stopped worker's pause: under central's ALIVE_S (2 s), so it stays joined
TAKE_BACK_POLL_S = 0.02  # how often central's stats are read while a resumed worker is not back
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
    at_s: float  # when it came, since the soak began

    @classmethod
    def of(cls, a: Answer, at_s: float) -> Outcome:
        return cls(a.elapsed_ms, a.degraded, None if a.error is None else a.error.split(":", 1)[0], at_s)


@dataclass(frozen=True)
class Fault:
    """One fault the soak made, or its undoing: what, to whom, when (since the soak began)."""

    event: str  # kill, restart, stop, resume
    worker: str
    at_s: float


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
class Setup:
    """How the soak ran."""

    minutes: float
    rate_per_s: float
    window: int
    deadline_ms: float
    warmup_s: float
    kills: int
    stops: int

    @property
    def late_ms(self) -> float:
        """An answer later than this at the client breaks issue #33's outside bound."""
        return 1.2 * self.deadline_ms + 50


@dataclass(frozen=True)
class SoakResult:
    command: str
    setup: Setup
    sent: int
    answered: int  # with logits, degraded or not
    degraded: int
    errors: dict[str, int]  # explicit error answers by kind
    lost: int  # no answer at all within TOTAL_TIMEOUT_S
    p50_ms: float  # client-side, submission to answer, answers with logits
    p99_ms: float
    max_ms: float  # of every answer, errors included
    late_at_s: list[float]  # when each answer (errors included) later than setup.late_ms came
    taken_back_s: list[float]  # per resume: until central waited for that worker again
    faults: list[Fault]  # to set the late answers beside
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

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)

    def close(self) -> None:
        for name in self.procs:
            self.kill(name)


class Faults:
    """The soak's faults, one every `every_s` until `until` (round robin over the workers, kills
    and stops taking turns), and each one's undoing: a killed worker restarted, a stopped one
    resumed and then watched until central waits for it again."""

    def __init__(self, cluster: Cluster, workers: list[str], began: float, every_s: float, until: float):
        self.cluster, self.workers, self.every_s, self.until = cluster, workers, every_s, until
        self.began, self.next_at = began, began + every_s
        self.kills = self.stops = 0
        self.undo: tuple[str, str, float] | None = None  # (fault, worker, when to undo it)
        self.watched: tuple[str, float] | None = None  # (resumed worker, when it was resumed)
        self.last_poll = float("-inf")
        self.taken_back_s: list[float] = []
        self.log: list[Fault] = []

    @property
    def busy(self) -> bool:
        return self.undo is not None or self.watched is not None

    def step(self, now: float, stats_client: Client) -> None:
        if not self.busy and now < self.until and now >= self.next_at:
            victim = self.workers[((self.kills + self.stops) // 2) % len(self.workers)]
            if self.kills <= self.stops:
                self.log.append(Fault("kill", victim, now - self.began))
                self.cluster.kill(victim)
                self.kills, self.undo = self.kills + 1, ("kill", victim, now + RESTART_AFTER_S)
            else:
                self.log.append(Fault("stop", victim, now - self.began))
                self.cluster.signal(victim, signal.SIGSTOP)
                self.stops, self.undo = self.stops + 1, ("stop", victim, now + STOP_S)
            self.next_at += self.every_s
        if self.undo is not None and now >= self.undo[2]:
            fault, name, _ = self.undo
            self.log.append(Fault("restart" if fault == "kill" else "resume", name, now - self.began))
            if fault == "kill":
                self.cluster.start(name)
            else:
                self.cluster.signal(name, signal.SIGCONT)
                self.watched = (name, now)
            self.undo = None
        if self.watched is not None and now - self.last_poll >= TAKE_BACK_POLL_S:
            self.last_poll = now
            stats = stats_client.stats()
            record = None if stats is None else next((w for w in stats.workers if w.worker == self.watched[0]), None)
            waited = now - self.watched[1]
            if (record is not None and record.excluded is None) or waited >= TOTAL_TIMEOUT_S:
                self.taken_back_s.append(waited)  # at TOTAL_TIMEOUT_S: never taken back (a lower bound)
                self.watched = None

    def wake(self) -> float:
        """The next moment something is due."""
        due = [self.next_at] if not self.busy and self.next_at < self.until else []
        if self.undo is not None:
            due.append(self.undo[2])
        if self.watched is not None:
            due.append(self.last_poll + TAKE_BACK_POLL_S)
        return min(due, default=float("inf"))


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
    sent = 0
    with contextlib.closing(cluster), Client.for_bundle(central, total_timeout_s=TOTAL_TIMEOUT_S) as client:
        stats_client = Client.for_bundle(central)
        with contextlib.closing(stats_client):
            client.wait_until_complete(inputs[0], JOIN_TIMEOUT_S)
            began = time.monotonic()
            faults = Faults(cluster, workers, began, kill_every_s, began + 0.8 * duration)
            next_send, next_sample = began, began
            while (now := time.monotonic()) < began + duration or client.outstanding or faults.busy:
                sending = now < began + duration
                if sending and now >= next_send and len(client.outstanding) < window:
                    client.submit(inputs[sent % len(inputs)], timeout_s=1.0)
                    sent, next_send = sent + 1, max(next_send + 1 / rate_per_s, now - 1.0)
                if now >= next_sample:
                    samples.append(_sample(now - began, cluster, stats_client))
                    next_sample += SAMPLE_S
                faults.step(now, stats_client)
                wake = [next_sample, faults.wake()]
                if sending and len(client.outstanding) < window:
                    wake.append(next_send)
                if (answer := client.receive(max(0.001, min(wake) - time.monotonic()))) is not None:
                    answers.append(Outcome.of(answer, time.monotonic() - began))
            samples.append(_sample(time.monotonic() - began, cluster, stats_client))
    setup = Setup(minutes, rate_per_s, window, central.manifest.central.deadline_ms, warmup, faults.kills, faults.stops)
    result = _summarise(setup, sent, answers, samples, faults, build_dir)
    (build_dir / SOAK).write_text(json.dumps(to_json(result), indent=1))
    return result


def _sample(t_s: float, cluster: Cluster, stats_client: Client) -> Sample:
    rss = {name: rss_kib(p.pid) for name, p in cluster.procs.items()}
    rss["client"] = rss_kib(os.getpid())
    stats = stats_client.stats()
    if stats is None:
        raise CofcError(f"central did not answer its stats request at {t_s:.0f} s")
    entries = sum(w.recent + w.fast for w in stats.workers)
    return Sample(t_s, rss, stats.answered, stats.queued, stats.pending, entries, sum(stats.rejected.values()))


def _summarise(
    setup: Setup,
    sent: int,
    answers: list[Outcome],
    samples: list[Sample],
    faults: Faults,
    build_dir: Path,
) -> SoakResult:
    errors: dict[str, int] = {}
    for a in answers:
        if a.error is not None:
            errors[a.error] = errors.get(a.error, 0) + 1
    ok = [a.elapsed_ms for a in answers if a.error is None]
    if not ok:
        raise CofcError("the soak got no answer with logits")
    warm = next((s for s in samples if s.t_s >= setup.warmup_s), samples[-1])
    memory = [
        Memory(p, warm.rss_kib[p], samples[-1].rss_kib[p], max(s.rss_kib[p] for s in samples)) for p in warm.rss_kib
    ]
    return SoakResult(
        command=f"cofc bench {build_dir} --soak {setup.minutes:g} --rate {setup.rate_per_s:g}",
        setup=setup,
        sent=sent,
        answered=len(ok),
        degraded=sum(a.degraded for a in answers if a.error is None),
        errors={k: v for k, v in errors.items() if k != "timeout"},
        lost=errors.get("timeout", 0) + sent - len(answers),
        p50_ms=float(np.percentile(ok, 50)),
        p99_ms=float(np.percentile(ok, 99)),
        max_ms=max(a.elapsed_ms for a in answers),
        late_at_s=[a.at_s for a in answers if a.error != "timeout" and a.elapsed_ms > setup.late_ms],
        taken_back_s=faults.taken_back_s,
        faults=faults.log,
        memory=memory,
        samples=samples,
    )


def format_soak(r: SoakResult) -> str:
    u = r.setup
    back = ", ".join(f"{t * 1e3:.0f}" for t in r.taken_back_s) or "none resumed"
    lines = [
        f"soak of {u.minutes:g} min at {u.rate_per_s:g} requests/s ({u.window} in flight at most), "
        f"a worker killed {u.kills} times and stopped {u.stops} times: {r.sent} sent, {r.answered} answered "
        f"({r.degraded} degraded), errors {r.errors or 'none'}, {r.lost} lost",
        f"end to end at the client: median {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms "
        f"(deadline {u.deadline_ms:g} ms); {len(r.late_at_s)} answers later than {u.late_ms:g} ms",
        f"a resumed worker waited for again after (ms): {back} (two deadlines: {2 * u.deadline_ms:g} ms)",
        *(
            [
                f"late answers came at (s): {', '.join(f'{t:.1f}' for t in r.late_at_s)}; faults at (s): "
                + ", ".join(f"{f.event} {f.worker} {f.at_s:.1f}" for f in r.faults)
            ]
            if r.late_at_s
            else []
        ),
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
