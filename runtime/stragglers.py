"""Whom central waits for: each worker connection's recent t1+t2, and the probes that take a
straggler back.

Waiting on a device that misses the deadline costs every request the whole deadline; answering
from the others at once costs only the accuracy the feature dropout was trained to lose. So a
worker whose p90 t1+t2 over its last requests exceeds the limit (slow_factor x deadline), or that
missed the deadline `MISSES_TO_LEAVE` times in a row, is left out: central answers from the others
and times it on probes (requests sent to it anyway, never waited for), one in flight at a time.

A record belongs to one connection (the worker's routing identity and the epoch central gave it
when it joined): a worker that rejoins starts afresh, and a reply or an expiry of a request sent
to its previous connection counts for nothing, so a restarted process never pays for the old
one's misses.

Probes are paced by what the plan expects the worker to take (its predicted t1+t2, from the
bundle; for a bundle without one, the median of its own t1+t2 while it was fast), `probe_every`
times that apart, so probing costs it about 1/probe_every of its time; never more than deadline /
(2 x PROBES_TO_RECOVER) apart, so that a worker healthy again is back within half a deadline plus
its probes' latency. Hysteresis: a worker left out again soon after it
was taken back (it flaps) needs twice as many good probes each time, so it is not taken back on
every short healthy spell.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

PROBES_TO_RECOVER = 3  # consecutive good probes that take a straggler back (first time)
MISSES_TO_LEAVE = 2  # consecutive missed deadlines that leave a worker out at once
MAX_RELAPSES = 4  # hysteresis stops doubling here: at most 3 x 2^4 good probes
log = logging.getLogger("cofc.central")


@dataclass(frozen=True)
class Connection:
    """One worker process as central knows it: its routing identity and the epoch it joined in."""

    identity: bytes
    epoch: int


@dataclass(frozen=True)
class Probe:
    request: int  # central's request id the probe rode on
    sent: float  # time.monotonic()


@dataclass
class Record:
    """What central knows of one worker connection."""

    connection: Connection
    recent: deque[float]  # t1+t2 in ms of its last requests; inf: it missed the deadline
    fast_ms: deque[float]  # t1+t2 of those within the limit: what it is expected to take
    excluded: str | None = None  # why it is not waited for
    misses: int = 0  # consecutive missed deadlines
    good_probes: int = 0  # consecutive probes within the limit
    probe: Probe | None = None  # the probe in flight
    last_probe: float = float("-inf")
    relapses: int = 0  # times left out again soon after it was taken back
    back_at: float = float("-inf")  # when it was last taken back


@dataclass(frozen=True)
class Plan:
    """One request's targets: whom it waits for, whom it leaves out (and why), whom it probes."""

    waited: frozenset[str]
    excluded: dict[str, str]
    probed: frozenset[str]


@dataclass(frozen=True)
class RecordStats:
    """One worker's record as the stats request reports it (sizes: nothing may grow)."""

    worker: str
    epoch: int
    excluded: str | None
    recent: int
    fast: int
    misses: int
    good_probes: int
    probe_in_flight: bool
    relapses: int


class Stragglers:
    """The records of the workers' current connections."""

    def __init__(
        self,
        expected_ms: dict[str, float | None],
        window: int,
        probe_every: int,
        limit_ms: float,
        deadline_s: float,
        min_devices: int,
    ):
        """`expected_ms`: each worker, in the fusion's order, with its predicted t1+t2 (None: unknown)."""
        self.window, self.probe_every, self.limit_ms = window, probe_every, limit_ms
        self.deadline_s, self.min_devices = deadline_s, min_devices
        self.max_gap_s = deadline_s / (2 * PROBES_TO_RECOVER)
        self.relapse_s = 10 * deadline_s  # left out again within this of being taken back: it flaps
        self.records: dict[str, Record] = {}
        self.workers, self.expected_ms = list(expected_ms), expected_ms
        self.epochs = 0

    def join(self, name: str, identity: bytes) -> Connection:
        """A worker (re)joined on a new connection: a new process, judged afresh."""
        self.epochs += 1
        connection = Connection(identity, self.epochs)
        self.records[name] = Record(connection, deque(maxlen=self.window), deque(maxlen=self.window))
        return connection

    def connection(self, name: str) -> Connection | None:
        record = self.records.get(name)
        return None if record is None else record.connection

    def _record(self, name: str, connection: Connection) -> Record | None:
        """The record of `connection` if it is still `name`'s current one; None for an old one."""
        record = self.records.get(name)
        return record if record is not None and record.connection == connection else None

    def plan(self, request: int, alive: set[str], now: float) -> Plan:
        """Whom request `request` waits for, whom it leaves out, and which of those it probes: a
        left-out worker with no probe in flight whose last probe is `gap` old."""
        live = [n for n in self.workers if n in alive and n in self.records]
        excluded = {n: r.excluded for n in live if (r := self.records[n]).excluded is not None}
        probed = set()
        for name in excluded:
            record = self.records[name]
            if record.probe is None and now - record.last_probe >= self.gap_s(name):
                record.probe, record.last_probe = Probe(request, now), now
                probed.add(name)
        return Plan(frozenset(set(live) - set(excluded)), excluded, frozenset(probed))

    def gap_s(self, name: str) -> float:
        """Probes `probe_every` x the worker's expected t1+t2 apart, at most deadline / (2 x 3)."""
        expected, fast = self.expected_ms.get(name), self.records[name].fast_ms
        if expected is None and fast:
            expected = statistics.median(fast)
        if expected is None:
            return self.max_gap_s
        return min(self.max_gap_s, self.probe_every * expected / 1e3)

    def probe_answered(self, name: str, identity: bytes, request: int, now: float) -> bool:
        """A feature that answers `name`'s probe in flight: timed, never fused."""
        record = self.records.get(name)
        probe = None if record is None else record.probe
        if record is None or probe is None or probe.request != request or record.connection.identity != identity:
            return False
        record.probe = None
        self.observe(name, record.connection, (now - probe.sent) * 1e3)
        return True

    def expire(self, now: float) -> None:
        """A probe unanswered within the limit: a miss; its late answer is not a probe any more."""
        for name, record in self.records.items():
            if record.probe is not None and (now - record.probe.sent) * 1e3 >= self.limit_ms:
                record.probe = None
                self.observe(name, record.connection, float("inf"))

    def next_due(self) -> float | None:
        """When the earliest probe in flight expires."""
        sent = [r.probe.sent for r in self.records.values() if r.probe is not None]
        return min(sent) + self.limit_ms / 1e3 if sent else None

    def observe(self, name: str, connection: Connection, ms: float) -> None:
        """One request's t1+t2 of `name` over `connection` (inf: it missed the deadline). A
        connection that is not the worker's current one is ignored: its process is gone."""
        record = self._record(name, connection)
        if record is None:
            return
        fast = ms <= self.limit_ms
        record.recent.append(ms)
        record.misses = 0 if np.isfinite(ms) else record.misses + 1
        if fast:
            record.fast_ms.append(ms)
        if record.excluded is not None:
            record.good_probes = record.good_probes + 1 if fast else 0
            needed = PROBES_TO_RECOVER << record.relapses
            if record.good_probes >= needed:
                log.info(
                    "worker %s is fast again (%d probes within %.0f ms): waited for again", name, needed, self.limit_ms
                )
                record.excluded, record.good_probes, record.misses = None, 0, 0
                record.recent.clear()
                record.back_at = time.monotonic()
            return
        if self._may_exclude():
            reason = self._slow(record)
            if reason is not None:
                self._exclude(name, record, reason)

    def _slow(self, record: Record) -> str | None:
        """Why this worker is too slow to wait for, or None."""
        if record.misses >= MISSES_TO_LEAVE:
            return f"slow: missed the {self.deadline_s * 1e3:.0f} ms deadline {record.misses} times in a row"
        if len(record.recent) < max(2, self.window // 2):
            return None
        p90 = float(np.percentile(np.array(record.recent), 90))
        if p90 <= self.limit_ms:
            return None
        late = sum(1 for v in record.recent if v == float("inf"))
        shown = f"{p90:.0f} ms" if np.isfinite(p90) else f"over the deadline ({late} of {len(record.recent)} missed it)"
        return f"slow: p90 {shown} > {self.limit_ms:.0f} ms"

    def _exclude(self, name: str, record: Record, reason: str) -> None:
        now = time.monotonic()
        record.relapses = min(MAX_RELAPSES, record.relapses + 1) if now - record.back_at < self.relapse_s else 0
        record.excluded, record.good_probes = reason, 0
        record.recent.clear()
        log.warning(
            "worker %s not waited for (%s); back after %d good probes",
            name,
            reason,
            PROBES_TO_RECOVER << record.relapses,
        )

    def _may_exclude(self) -> bool:
        """Leaving one more worker out still leaves `min_devices` (central counts as one)."""
        waited = [n for n in self.workers if (r := self.records.get(n)) is None or r.excluded is None]
        return len(waited) >= self.min_devices

    def stats(self) -> tuple[RecordStats, ...]:
        return tuple(
            RecordStats(
                name,
                r.connection.epoch,
                r.excluded,
                len(r.recent),
                len(r.fast_ms),
                r.misses,
                r.good_probes,
                r.probe is not None,
                r.relapses,
            )
            for name, r in self.records.items()
        )


@dataclass(frozen=True)
class CentralStats:
    """What central holds, for a soak to watch: nothing here may grow with the requests served."""

    answered: int
    queued: int  # requests read, not yet started
    pending: int  # requests started, not yet answered
    workers: tuple[RecordStats, ...] = ()
    rejected: dict[str, int] = field(default_factory=dict)
