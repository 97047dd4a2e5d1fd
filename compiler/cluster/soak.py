"""`cofc bench BUILD_DIR --soak MINUTES`: the built plan under steady load for a long while.

Starts central and one worker per device (`cofc run`, each its own process), sends real test
inputs at a fixed rate (at most `window` in flight) for MINUTES, and every `kill_every_s` makes a
fault, three kinds taking turns: a worker (round robin) killed and restarted `RESTART_AFTER_S`
later; the same worker stopped (SIGSTOP) for `STOP_S`, short of central's alive window, so that it
stays joined but misses its deadlines, then resumed, after which central's stats are polled until it
waits for that worker again (the time it took back a resumed worker); central itself killed and
restarted `RESTART_AFTER_S` later, the client sending again what it had not answered. Throughout, an
`Impostor` holding the client key says hello as a worker and forges its features.

It samples every SAMPLE_S each process's resident memory (VmRSS from /proc/PID/status) and what
central holds (its `stats` answer: queued and pending requests, the straggler records), and checks
every answer against the fusion the local pipeline makes of the devices that answer names. It
reports whether anything grew (each process's RSS at the end against its RSS after warm-up, the
tables at the end), requests lost (no answer at all, where an explicit error is an answer), answers
that differ from the local pipeline's, requests the impostor received, the end-to-end latency at
the client, and the answers later than 1.2 x the deadline + 50 ms, apart from those that were in
flight while central was down. Nothing is faulted in the last fifth, so the end samples see every
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
from cofc.compiler.cluster.impostor import Impostor
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.pipeline.report import PLAN_COPY
from cofc.compiler.plan import load_plan
from cofc.errors import CofcError
from cofc.runtime._typed_json import to_json
from cofc.runtime.bundle import load_bundle
from cofc.runtime.client import Answer, Client
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.preprocess import Preprocessor

SOAK = "soak.json"  # in the build folder
SAMPLE_S = 5.0
RESTART_AFTER_S = 3.0
STOP_S = 1.0  # a stopped worker's pause: under central's ALIVE_S (2 s), so it stays joined
TAKE_BACK_POLL_S = 0.02  # how often central's stats are read while a resumed worker is not back
TOTAL_TIMEOUT_S = 30.0  # a request unanswered this long is lost
RSS_TOLERANCE = 0.10  # the issue's: each process within 10% of its RSS after warm-up
AGREE_ATOL = 1e-4  # an answer's logits against the local pipeline's fusion of the same devices
IMPOSTOR_SPRAY, IMPOSTOR_EVERY_S = 100, 1.0  # forged features a second: a steady nuisance, not a flood


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
    agrees: bool  # its logits are the local pipeline's for the devices it names (an error: True)
    central_ms: float | None  # from central reading the request to its answer, on central's clock

    @classmethod
    def of(cls, a: Answer, at_s: float, reference: np.ndarray | None) -> Outcome:
        agrees = a.logits is None or (reference is not None and bool(np.allclose(a.logits, reference, atol=AGREE_ATOL)))
        central_ms = a.timings.get("end_to_end_ms")
        return cls(
            a.elapsed_ms,
            a.degraded,
            None if a.error is None else a.error.split(":", 1)[0],
            at_s,
            agrees,
            central_ms if isinstance(central_ms, float) else None,
        )

    @property
    def sent_at_s(self) -> float:
        return self.at_s - self.elapsed_ms / 1e3


@dataclass(frozen=True)
class Fault:
    """One fault the soak made, or its undoing: what, to whom, when (since the soak began)."""

    event: str  # kill, restart, stop, resume
    process: str  # a worker's device name, or central's
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
    kill_every_s: float
    deadline_ms: float
    warmup_s: float
    kills: int  # of workers
    stops: int
    central_restarts: int

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
    late: list[Outcome]  # answers later than setup.late_ms, central being up
    waited_out_central: int  # answers in flight while central was down (late by its restart)
    central_out_s: list[tuple[float, float]]  # killed -> first answer after its restart
    disagreeing: int  # answers whose logits are not the local pipeline's for the devices they name
    impostor_requests: int  # requests central sent to the client-key peer passing for a worker
    impostor_sent: int  # hellos and forged features it sent
    taken_back_s: list[float]  # per resume: until central waited for that worker again
    faults: list[Fault]  # to set the late answers beside
    memory: list[Memory]
    samples: list[Sample] = field(default_factory=list)

    @property
    def steady(self) -> bool:
        """Nothing lost, no answer changed by the impostor or anything else, and no process's memory
        moved more than RSS_TOLERANCE after warm-up."""
        return (
            self.lost == 0
            and self.disagreeing == 0
            and self.impostor_requests == 0
            and all(abs(m.change) <= RSS_TOLERANCE for m in self.memory)
        )


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
    """The soak's faults, one every `every_s` until `until`, and each one's undoing, three kinds in
    turn: a worker (round robin) killed, then restarted; the same worker stopped, then resumed and
    watched until central waits for it again; central killed, then restarted, and out until the
    first answer after that."""

    def __init__(self, cluster: Cluster, workers: list[str], began: float, every_s: float, until: float):
        self.cluster, self.workers, self.every_s, self.until = cluster, workers, every_s, until
        self.began, self.next_at = began, began + every_s
        self.made = 0
        self.undo: tuple[str, str, float] | None = None  # (fault, process, when to undo it)
        self.watched: tuple[str, float] | None = None  # (resumed worker, when it was resumed)
        self.central_down_at: float | None = None  # since the soak began, until an answer comes
        self.central_out_s: list[tuple[float, float]] = []
        self.last_poll = float("-inf")
        self.taken_back_s: list[float] = []
        self.log: list[Fault] = []

    @property
    def undoing(self) -> bool:
        """A fault not undone yet, or a resumed worker not yet waited for again."""
        return self.undo is not None or self.watched is not None

    @property
    def busy(self) -> bool:
        """No new fault before the last one is undone and central, if it was restarted, answers."""
        return self.undoing or self.central_down_at is not None

    def count(self, event: str, central: bool = False) -> int:
        return sum(f.event == event and (f.process == self.cluster.central) == central for f in self.log)

    def _next(self) -> tuple[str, str]:
        """Kill a worker, stop it, kill central; then the next worker."""
        turn, worker = self.made % 3, self.workers[(self.made // 3) % len(self.workers)]
        return ("kill", worker) if turn == 0 else ("stop", worker) if turn == 1 else ("kill", self.cluster.central)

    def step(self, now: float, stats_client: Client) -> None:
        if not self.busy and now < self.until and now >= self.next_at:
            fault, victim = self._next()
            self.log.append(Fault(fault, victim, now - self.began))
            if fault == "kill":
                self.cluster.kill(victim)
                self.undo = (fault, victim, now + RESTART_AFTER_S)
                if victim == self.cluster.central:
                    self.central_down_at = now - self.began
            else:
                self.cluster.signal(victim, signal.SIGSTOP)
                self.undo = (fault, victim, now + STOP_S)
            self.made, self.next_at = self.made + 1, self.next_at + self.every_s
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

    @property
    def central_out(self) -> bool:
        return self.central_down_at is not None

    def answered(self, at_s: float) -> None:
        """An answer came (or the soak ended, at `at_s`): central is back if it was restarted."""
        if self.central_down_at is not None and self.undo is None:
            self.central_out_s.append((self.central_down_at, at_s))
            self.central_down_at = None

    def wake(self) -> float:
        """The next moment something is due."""
        due = [self.next_at] if not self.busy and self.next_at < self.until else []
        if self.undo is not None:
            due.append(self.undo[2])
        if self.watched is not None:
            due.append(self.last_poll + TAKE_BACK_POLL_S)
        return min(due, default=float("inf"))


class Reference:
    """The local pipeline's logits for the soak's inputs, fused from the devices an answer names
    (what a degraded answer must equal as well)."""

    def __init__(self, pipeline: LocalPipeline, raw: np.ndarray | list, names: list[str]):
        self.pipeline, self.names = pipeline, names
        self.features = pipeline.features(raw)
        self.cache: dict[tuple[int, frozenset[str]], np.ndarray] = {}

    def __call__(self, index: int, present: list[str]) -> np.ndarray:
        key = (index, frozenset(present))
        if key not in self.cache:
            mask = np.array([[n in key[1] for n in self.names]], dtype=np.float32)
            self.cache[key] = self.pipeline.fuse([f[index : index + 1] for f in self.features], mask)
        return self.cache[key]


def soak(
    build_dir: Path, minutes: float, rate_per_s: float = 10.0, window: int = 8, kill_every_s: float = 60.0
) -> SoakResult:
    build_dir = Path(build_dir)
    plan = load_plan(build_dir / PLAN_COPY)
    paths = {d.name: build_dir / "bundle" / d.name for d in plan.devices}
    bundles = {name: load_bundle(p) for name, p in paths.items()}
    central = bundles[plan.central.name]
    prep = Preprocessor.for_bundle(central)
    test = load_data(plan.dataset, Expects.of_manifest(central.manifest)).test.take(64, seed=1)
    inputs = [prep.pack(test.inputs[i : i + 1]) for i in range(len(test))]
    workers = [d.name for d in plan.devices if d.name != plan.central.name]
    duration, warmup = minutes * 60, min(60.0, minutes * 15)
    answers: list[Outcome] = []
    samples: list[Sample] = []
    index_of: dict[int, int] = {}  # request id -> its input
    sent = 0
    with contextlib.ExitStack() as stack:
        pipeline = stack.enter_context(LocalPipeline(list(bundles.values())))
        reference = Reference(pipeline, test.inputs, [d.name for d in central.fusion.devices])
        cluster = stack.enter_context(contextlib.closing(Cluster(paths, plan.central.name)))
        client = stack.enter_context(Client.for_bundle(central, total_timeout_s=TOTAL_TIMEOUT_S))
        stats_client = stack.enter_context(Client.for_bundle(central))
        client.wait_until_complete(inputs[0], JOIN_TIMEOUT_S)
        impostor = Impostor(central, workers[0], spray=IMPOSTOR_SPRAY, every_s=IMPOSTOR_EVERY_S)
        impostor.start()
        stack.callback(impostor.join, 10)
        stack.callback(impostor.stop.set)
        began = time.monotonic()
        faults = Faults(cluster, workers, began, kill_every_s, began + 0.8 * duration)
        next_send, next_sample = began, began
        while (now := time.monotonic()) < began + duration or client.outstanding or faults.undoing:
            sending = now < began + duration
            if sending and now >= next_send and len(client.outstanding) < window:
                index_of[client.submit(inputs[sent % len(inputs)], timeout_s=1.0)] = sent % len(inputs)
                sent, next_send = sent + 1, max(next_send + 1 / rate_per_s, now - 1.0)
            if now >= next_sample and not faults.central_out:  # central's tables are gone with it
                samples.append(_sample(now - began, cluster, stats_client))
                next_sample += SAMPLE_S
            faults.step(now, stats_client)
            wake = [next_sample, faults.wake()]
            if sending and len(client.outstanding) < window:
                wake.append(next_send)
            if (answer := client.receive(max(0.001, min(wake) - time.monotonic()))) is not None:
                at_s, index = time.monotonic() - began, index_of.pop(answer.id)
                answers.append(
                    Outcome.of(answer, at_s, reference(index, answer.present) if answer.logits is not None else None)
                )
                if answer.error is None:
                    faults.answered(at_s)
        faults.answered(time.monotonic() - began)  # an outage no answer ended lasted until now
        samples.append(_sample(time.monotonic() - began, cluster, stats_client))
    kills, restarts = faults.count("kill"), faults.count("kill", central=True)
    setup = Setup(
        minutes,
        rate_per_s,
        window,
        kill_every_s,
        central.manifest.central.deadline_ms,
        warmup,
        kills,
        faults.count("stop"),
        restarts,
    )
    result = _summarise(setup, sent, answers, samples, faults, impostor, build_dir)
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
    impostor: Impostor,
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
    late = [a for a in answers if a.error != "timeout" and a.elapsed_ms > setup.late_ms]

    def across(a: Outcome) -> bool:
        """In flight at some moment while central was down."""
        return any(a.sent_at_s < up and a.at_s > down for down, up in faults.central_out_s)

    memory = [
        Memory(p, warm.rss_kib[p], samples[-1].rss_kib[p], max(s.rss_kib[p] for s in samples)) for p in warm.rss_kib
    ]
    return SoakResult(
        command=f"cofc bench {build_dir} --soak {setup.minutes:g} --rate {setup.rate_per_s:g} "
        f"--kill-every {setup.kill_every_s:g}",
        setup=setup,
        sent=sent,
        answered=len(ok),
        degraded=sum(a.degraded for a in answers if a.error is None),
        errors={k: v for k, v in errors.items() if k != "timeout"},
        lost=errors.get("timeout", 0) + sent - len(answers),
        p50_ms=float(np.percentile(ok, 50)),
        p99_ms=float(np.percentile(ok, 99)),
        max_ms=max(a.elapsed_ms for a in answers),
        late=[a for a in late if not across(a)],
        waited_out_central=sum(map(across, answers)),
        central_out_s=faults.central_out_s,
        disagreeing=sum(not a.agrees for a in answers),
        impostor_requests=impostor.requests,
        impostor_sent=impostor.sent,
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
        f"a worker killed {u.kills} times and stopped {u.stops} times, central restarted {u.central_restarts} "
        f"times: {r.sent} sent, {r.answered} answered ({r.degraded} degraded), errors {r.errors or 'none'}, "
        f"{r.lost} lost",
        f"answers unlike the local pipeline's fusion of the devices they name: {r.disagreeing}; requests sent to "
        f"the impostor passing for a worker with the client key: {r.impostor_requests} ({r.impostor_sent} "
        "hellos and forged features sent)",
        f"end to end at the client: median {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms "
        f"(deadline {u.deadline_ms:g} ms); {len(r.late)} answers later than {u.late_ms:g} ms, apart from "
        f"{r.waited_out_central} in flight while central was down ("
        + (", ".join(f"{b - a:.1f} s" for a, b in r.central_out_s) or "never")
        + ")",
        f"a resumed worker waited for again after (ms): {back} (two deadlines: {2 * u.deadline_ms:g} ms)",
        *(
            [
                "late answers (came at s: at the client / at central ms): "
                + ", ".join(f"{a.at_s:.1f}: {a.elapsed_ms:.0f} / {a.central_ms or float('nan'):.0f}" for a in r.late),
                "faults at (s): " + ", ".join(f"{f.event} {f.process} {f.at_s:.1f}" for f in r.faults),
            ]
            if r.late
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
    lines.append(
        f"steady (0 lost, no answer changed, no request to the impostor, every RSS within {RSS_TOLERANCE:.0%} "
        f"of warm-up): {'yes' if r.steady else 'NO'}"
    )
    return "\n".join(lines)
