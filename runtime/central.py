"""The central device: receives requests, fans them out, runs its own sub-model, fuses, answers.

One ROUTER socket serves workers and clients. With CURVE (the default), the ZAP handler admits
only the public keys the bundle lists, and every message carries its sender's authenticated key
(ZeroMQ's User-Id). Who sent a message is decided by that key alone, never by a routing identity
or device name a peer chose: a worker is the holder of its key; requests go only to the connection
last seen with that key (learnt from the hello that key authenticated; the identity a peer may
pick counts for nothing, and taking over a connected peer's is refused), and a feature counts
only when it comes with that worker's key from the connection its request went to. Only client
keys may submit requests; a client key never receives a request nor delivers a feature. With
--insecure there are no keys, and names are all there is: this protection is off.

Per request: relay the input (the raw pixels, or the text's token ids: runtime/preprocess.py) to
every live worker, compute the central feature meanwhile, gather features until all live workers
answered or the deadline passed, fuse with the presence mask, answer. Between any two requests
central reads everything that arrived (features at once, requests into its queue) and answers what
reached its deadline, so the deadline holds however many requests are in flight: it counts from
when a request was read, and one still queued at its deadline is answered `overloaded`, never late.
A worker persistently slower than the deadline allows is not waited for: central answers from the
others at once, times it on paced probes, and waits for it again once they are fast
(runtime/stragglers.py). A `stats` request (client keys only) answers what central holds.
Every request gets exactly one answer: degraded (saying which devices were missing, and which
were left out as slow) when features are missing, an explicit error below `min_devices`.
Malformed or unexpected frames are counted per kind and logged once; none stops the loop.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from cofc.runtime._closing import Closing
from cofc.runtime._typed_json import to_json
from cofc.runtime.backends import open_backend
from cofc.runtime.bundle import Bundle
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.pace import DeviceClock
from cofc.runtime.preprocess import Preprocessor
from cofc.runtime.stragglers import CentralStats, Connection, Stragglers
from cofc.runtime.wire import Message, Rejections, WireError, decode, encode, match_inputs

ALIVE_S = 2.0  # a worker not heard from for this long is not waited for
POLL_MS = 100  # the loop wakes at least this often, requests or not
DRAIN_MAX = 256  # messages read between two requests at most: a flood cannot starve the queue
log = logging.getLogger("cofc.central")


@dataclass(frozen=True)
class Arrival:
    """A client's request as read off the socket: its deadline counts from `read`."""

    client: bytes
    message: Message
    read: float


@dataclass
class Pending:
    client: bytes
    client_id: int
    received: float
    deadline: float
    waiting: set[str]
    sent_to: dict[str, Connection] = field(default_factory=dict)  # worker -> the connection its request went to
    features: dict[str, np.ndarray] = field(default_factory=dict)
    sent: float = 0.0
    t1: dict[str, float] = field(default_factory=dict)
    t2: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # workers not waited for, and why


class Central(Closing):
    """Owns its two backends from construction to `close()`: use `with Central(...) as central:`.
    `cpu_share` paces it like a slower device (runtime/pace.py): a request's preprocessing and
    sub-model from when it is read, the fusion from when it starts."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "onnxruntime",
        threads: int = 1,
        insecure: bool = False,
        bind: Endpoint | None = None,
        cpu_share: float | None = None,
    ):
        m, fusion = bundle.manifest, bundle.fusion  # BundleError unless this is the central bundle
        self.bundle, self.insecure = bundle, insecure
        self.bind = bind or m.central.endpoint.bind_any()
        self.names = [d.name for d in fusion.devices]
        self.dims = [d.feature_dim for d in fusion.devices]
        self.workers = [w.name for w in fusion.workers]
        self.deadline_s = m.central.deadline_ms / 1e3
        self.min_devices = m.central.min_devices
        self.worker_keys = {w.public_key: w.name for w in fusion.workers}
        self.worker_digests = {w.name: w.digest for w in fusion.workers}
        self.client_keys = set(fusion.client_keys)
        self.stragglers = Stragglers(
            {w.name: w.expected_ms for w in fusion.workers},
            m.central.straggler_window,
            m.central.probe_every,
            m.central.slow_factor * m.central.deadline_ms,
            self.deadline_s,
            self.min_devices,
        )
        self.prep = Preprocessor.for_bundle(bundle)
        self.cpu_share = cpu_share
        with contextlib.ExitStack() as opened:  # a failure half-way closes what was opened
            self.engine = opened.enter_context(
                open_backend(backend, bundle.file("backbone.onnx"), threads=threads, precision=m.precision)
            )
            self.aggregator = opened.enter_context(
                open_backend(
                    backend, bundle.file("aggregator.onnx"), threads=threads, precision=m.precision, cpu_share=cpu_share
                )
            )
            self._backends = opened.pop_all()
        self.route: dict[str, bytes] = {}  # worker -> routing identity last seen with its key
        self.last_seen: dict[str, float] = {}
        self.queue: deque[Arrival] = deque()  # requests read, not yet started
        self.pending: dict[int, Pending] = {}
        # Random first id: a feature a worker computed for a central that since restarted can never
        # pass for one of this central's requests.
        self.ids = itertools.count(secrets.randbelow(1 << 62) + 1)
        self.rejected = Rejections(log)
        self.answered = 0
        self.ready = threading.Event()
        self.all_joined = threading.Event()

    def close(self) -> None:
        """Release both backends (idempotent); `serve` closes its own sockets."""
        self._backends.close()

    # -- authentication ----------------------------------------------------------------------
    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: admit the bundle's worker and client keys, nobody else."""
        text = key.decode() if isinstance(key, bytes) else key
        return text in self.worker_keys or text in self.client_keys

    def _peer_key(self, frame: zmq.Frame) -> str | None:
        return None if self.insecure else str(frame.get("User-Id"))  # a str metadata property

    # -- the loop ----------------------------------------------------------------------------
    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        ctx = zmq.Context()
        auth = None
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.router_handover = 0  # a peer reusing a connected peer's identity is ignored, never handed it
        sock.router_mandatory = 0
        if not self.insecure:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve_callback("*", credentials_provider=self)
            keys = self.bundle.keys()
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = keys.public.encode(), keys.secret.encode()
        sock.bind(str(self.bind))
        self.ready.set()
        try:
            while not stop.is_set():
                self._drain(sock)
                self._expire(sock)
                if self.queue:
                    self._infer(sock, self.queue.popleft())
                else:
                    sock.poll(self._idle_ms())
        finally:
            sock.close(0)
            if auth is not None:
                auth.stop()
            ctx.term()

    def _drain(self, sock: zmq.Socket[bytes]) -> None:
        """Read everything that arrived: features and hellos are handled at once, requests queued
        with the time they were read. Run between any two requests, so a request waits in the
        socket for one request's work at most and its deadline counts from (about) its arrival."""
        for _ in range(DRAIN_MAX):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._dispatch(sock, frames)

    def _idle_ms(self) -> int:
        """How long the loop may sleep: until the next deadline or probe expiry, POLL_MS at most."""
        now = time.monotonic()
        due = [p.deadline for p in self.pending.values()]
        if (probe := self.stragglers.next_due()) is not None:
            due.append(probe)
        return max(0, min(POLL_MS, int((min(due, default=now + 1) - now) * 1000) + 1))

    def _dispatch(self, sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        identity, body = frames[0].bytes, frames[1:]
        try:
            msg = decode(body)
        except WireError as exc:
            return self.rejected.add(exc.kind, str(exc))
        key = self._peer_key(body[0]) if body else None
        if msg.type == "hello":
            self._hello(sock, identity, key, msg)
        elif msg.type == "feature":
            self._feature(sock, identity, key, msg)
        elif msg.type == "infer":
            if key is not None and key not in self.client_keys:
                return self.rejected.add("not-a-client", "a worker key submitted a request")
            self.queue.append(Arrival(identity, msg, time.monotonic()))
        elif msg.type == "stats":
            if key is not None and key not in self.client_keys:
                return self.rejected.add("not-a-client", "a worker key asked for stats")
            stats = to_json(self.stats())
            sock.send_multipart([identity, *encode(Message("stats", msg.id, meta={"stats": stats}))], copy=False)
        else:
            self.rejected.add("unexpected-type", msg.type)

    def _hello(self, sock: zmq.Socket[bytes], identity: bytes, key: str | None, msg: Message) -> None:
        name = msg.meta.get("device")
        reason = ""
        if not isinstance(name, str) or name not in self.workers:
            reason = f"device {name!r} is not a worker of plan {self.bundle.plan_id}"
        elif key is not None and self.worker_keys.get(key) != name:
            reason = f"{name!r} spoke with another device's key"
        elif msg.meta.get("plan") != self.bundle.plan_id:
            reason = f"bundle of plan {msg.meta.get('plan')!r}, central runs plan {self.bundle.plan_id}"
        elif msg.meta.get("digest") != self.worker_digests.get(name):
            reason = f"{name!r} runs a bundle this plan did not build (digest mismatch)"
        if reason or not isinstance(name, str):
            self.rejected.add("refused-worker", reason)
            sock.send_multipart([identity, *encode(Message("refuse", 0, meta={"reason": reason}))], copy=False)
            return
        known = self.route.get(name) == identity and name in self.last_seen
        self.route[name] = identity
        self.last_seen[name] = time.monotonic()
        if not known:
            log.info("worker %s joined", name)
            self._rejoined(sock, name, self.stragglers.join(name, identity))
            if set(self.workers) <= self.alive():
                self.all_joined.set()
            sock.send_multipart([identity, *encode(Message("welcome", 0))], copy=False)

    def alive(self) -> set[str]:
        now = time.monotonic()
        return {n for n, t in self.last_seen.items() if now - t < ALIVE_S}

    def _rejoined(self, sock: zmq.Socket[bytes], name: str, connection: Connection) -> None:
        """`name` is a new connection: what its previous one was sent will never come back, so
        requests waiting only for that are answered now instead of at their deadline."""
        for rid, p in list(self.pending.items()):
            if name in p.waiting and p.sent_to.get(name) != connection:
                p.waiting.discard(name)
                if not p.waiting:
                    self._finish(sock, rid)

    def stats(self) -> CentralStats:
        """What central holds now (the stats request answers it to a client key)."""
        return CentralStats(
            self.answered, len(self.queue), len(self.pending), self.stragglers.stats(), dict(self.rejected)
        )

    def _infer(self, sock: zmq.Socket[bytes], arrival: Arrival) -> None:
        """Start a queued request: relay it, compute the central feature. One that waited in the
        queue past its deadline is answered `overloaded` at once: a late answer helps nobody."""
        client, msg = arrival.client, arrival.message
        deadline = arrival.read + self.deadline_s
        if time.monotonic() >= deadline:
            waited = (time.monotonic() - arrival.read) * 1e3
            return self._answer_error(sock, client, msg.id, "overloaded", f"queued {waited:.0f} ms, past the deadline")
        clock = DeviceClock(self.cpu_share)
        try:
            with clock.step():
                inputs = self.prep.unpack(msg.arrays)
                feeds = match_inputs(inputs, self.engine.inputs)
                relayed = self.prep.relay(msg.arrays, inputs)
        except WireError as exc:
            return self._answer_error(sock, client, msg.id, exc.kind, str(exc))
        rid = next(self.ids)
        now = time.monotonic()
        plan = self.stragglers.plan(rid, self.alive(), now)
        pending = Pending(client, msg.id, arrival.read, deadline, set(plan.waited), excluded=plan.excluded)
        self.pending[rid] = pending
        pending.sent = time.monotonic()
        # The send time lets a worker emulated on this host count from it (runtime/pace.py).
        request = encode(Message("request", rid, relayed, {"sent_s": pending.sent}))
        for name in plan.waited | plan.probed:
            connection = self.stragglers.connection(name)
            assert connection is not None  # alive: it said hello, so it has a record
            if name in plan.waited:
                pending.sent_to[name] = connection
            sock.send_multipart([connection.identity, *request], copy=False)
        ready = clock.due
        with clock.step():
            pending.features[self.bundle.device] = next(iter(self.engine.run(feeds).values()))
        pending.t1[self.bundle.device] = (clock.wait() - ready) * 1e3
        pending.t2[self.bundle.device] = 0.0
        if not pending.waiting:
            self._finish(sock, rid)

    def _worker_of(self, identity: bytes, key: str | None) -> str | None:
        """The worker that sent a message: the owner of the CURVE key that authenticated it, if
        it came over the connection last seen with that key. Insecure: whoever said hello on it."""
        if key is None:
            return next((n for n, i in self.route.items() if i == identity), None)
        name = self.worker_keys.get(key)
        return name if name is not None and self.route.get(name) == identity else None

    def _feature(self, sock: zmq.Socket[bytes], identity: bytes, key: str | None, msg: Message) -> None:
        if key is not None and key not in self.worker_keys:
            return self.rejected.add("not-a-worker", "a feature sent with a client key")
        name = self._worker_of(identity, key)
        if name is None:
            return self.rejected.add("unknown-worker", "feature from a connection that never said hello")
        self.last_seen[name] = time.monotonic()
        if self.stragglers.probe_answered(name, identity, msg.id, time.monotonic()):
            return
        pending = self.pending.get(msg.id)
        connection = None if pending is None else pending.sent_to.get(name)
        if pending is None or connection is None or name not in pending.waiting or connection.identity != identity:
            return self.rejected.add("late-feature", f"{name} request {msg.id}")
        feature = msg.arrays.get("feature")
        dim = self.dims[self.names.index(name)]
        batch = len(next(iter(pending.features.values())))
        if feature is None or feature.dtype != np.float32 or feature.shape != (batch, dim):
            return self.rejected.add("bad-feature", f"{name}: {None if feature is None else feature.shape}")
        t1 = float(msg.meta.get("t1_ms", 0.0))
        pending.features[name] = feature.copy()
        pending.t1[name] = t1
        pending.t2[name] = max(0.0, (time.monotonic() - pending.sent) * 1e3 - t1)
        pending.waiting.discard(name)
        self.stragglers.observe(name, connection, t1 + pending.t2[name])
        if not pending.waiting:
            self._finish(sock, msg.id)

    def _expire(self, sock: zmq.Socket[bytes]) -> None:
        """Answer what reached its deadline, and count the probes that outlived the limit."""
        now = time.monotonic()
        for rid in [r for r, p in self.pending.items() if now >= p.deadline]:
            self._finish(sock, rid)
        self.stragglers.expire(now)

    def _finish(self, sock: zmq.Socket[bytes], rid: int) -> None:
        p = self.pending.pop(rid)
        for name in p.waiting:  # missed the deadline
            self.stragglers.observe(name, p.sent_to[name], float("inf"))
        present = [n for n in self.names if n in p.features]
        missing = [n for n in self.names if n not in p.features]
        timings: dict[str, dict[str, float] | float] = {"t1_ms": p.t1, "t2_ms": p.t2}
        if len(present) < self.min_devices:
            return self._answer_error(
                sock, p.client, p.client_id, "too-few-devices", f"only {present} answered before the deadline"
            )
        batch = len(p.features[self.bundle.device])
        feats = [
            p.features.get(n, np.zeros((batch, d), np.float32)) for n, d in zip(self.names, self.dims, strict=True)
        ]
        mask = np.tile(np.array([[n in p.features for n in self.names]], np.float32), (batch, 1))
        start = time.perf_counter()
        logits = next(iter(self.aggregator.run({"features": np.concatenate(feats, axis=1), "mask": mask}).values()))
        timings["t3_ms"] = (time.perf_counter() - start) * 1e3
        timings["end_to_end_ms"] = (time.monotonic() - p.received) * 1e3
        meta = {"present": present, "missing": missing, "degraded": bool(missing), "timings": timings}
        if p.excluded:
            meta["excluded"] = p.excluded
        sock.send_multipart([p.client, *encode(Message("answer", p.client_id, {"logits": logits}, meta))], copy=False)
        self.answered += 1

    def _answer_error(self, sock: zmq.Socket[bytes], client: bytes, client_id: int, kind: str, detail: str) -> None:
        self.rejected.add(kind, detail)
        sock.send_multipart(
            [client, *encode(Message("answer", client_id, meta={"error": f"{kind}: {detail}"}))], copy=False
        )
        self.answered += 1
