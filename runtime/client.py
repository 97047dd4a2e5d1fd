"""A small client for the central device: submit model inputs, receive answers (pipelined).

No request is lost to a central restart: the client keeps every request until its answer comes.
It watches its own connection (a ZeroMQ socket monitor): what was sent before a disconnect is sent
again once the handshake with central succeeds again, and a request unanswered for `retry_s` is
sent again as well. Client request ids make a duplicate answer harmless: the first answer wins,
a later one is dropped and counted. A request that has no answer after `total_timeout_s` ends in an
explicit error answer, so every request ends in exactly one answer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from cofc.errors import CofcError
from cofc.runtime._closing import Closing
from cofc.runtime._sockets import client_socket
from cofc.runtime._typed_json import SchemaError, from_json
from cofc.runtime.bundle import Bundle
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.keys import KeyPair
from cofc.runtime.stragglers import CentralStats
from cofc.runtime.wire import Message, WireError, decode, encode

RETRY_S = 5.0  # resend a request unanswered this long while connected (a reconnect resends at once)
TOTAL_TIMEOUT_S = 60.0  # then it ends in an error answer


@dataclass
class Answer:
    id: int
    logits: np.ndarray | None
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    degraded: bool = False
    timings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # device -> why central did not wait for it
    tries: int = 1  # how many times the client sent it
    elapsed_ms: float = 0.0  # from its submission to its answer, on this client's clock


@dataclass
class Outstanding:
    """A request without an answer yet: kept so that it can be sent again."""

    arrays: dict[str, np.ndarray]
    submitted: float
    sent: float | None = None  # None: to be sent once central is reachable again
    tries: int = 0


class Client(Closing):
    """A DEALER socket to central; `with Client(...) as client:` closes it."""

    def __init__(
        self,
        endpoint: Endpoint,
        server_key: str | None = None,
        keys: KeyPair | None = None,
        retry_s: float = RETRY_S,
        total_timeout_s: float = TOTAL_TIMEOUT_S,
    ):
        self.ctx = zmq.Context()
        self.sock = client_socket(self.ctx, zmq.DEALER, server_key, keys)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.sock.connect(str(endpoint))
        self.ids = itertools.count(1)
        self.retry_s, self.total_timeout_s = retry_s, total_timeout_s
        self.outstanding: dict[int, Outstanding] = {}
        self.connected = False
        self.handshakes = 0  # more than one: central was lost and found again
        self.resent = 0
        self.dropped = 0  # answers to requests already answered or given up: duplicates, late ones
        self.central_stats: CentralStats | None = None  # the last answer to `stats()`

    @classmethod
    def for_bundle(
        cls,
        bundle: Bundle,
        endpoint: Endpoint | None = None,
        insecure: bool = False,
        retry_s: float = RETRY_S,
        total_timeout_s: float = TOTAL_TIMEOUT_S,
    ) -> Client:
        """A client on the central device (by default at its bundle's port on 127.0.0.1), with the
        client key its bundle carries."""
        central = bundle.manifest.central
        endpoint = endpoint or central.endpoint.on("127.0.0.1")
        if insecure:
            return cls(endpoint, retry_s=retry_s, total_timeout_s=total_timeout_s)
        return cls(endpoint, central.public_key, bundle.client_keys(), retry_s, total_timeout_s)

    # -- sending -------------------------------------------------------------------------------
    def submit(self, arrays: dict[str, np.ndarray], timeout_s: float = 10.0) -> int:
        """Queue one request; TimeoutError when central takes none within `timeout_s`. A DEALER
        blocks on send while it has no connection, which is the state of a client whose keys
        central refused: without the wait it would hang there."""
        if not self.sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            raise TimeoutError(f"central accepted no request within {timeout_s} s")
        return self._submit(arrays)

    def _submit(self, arrays: dict[str, np.ndarray]) -> int:
        """Keep the request and send it if the socket takes it now, else once it is reachable."""
        ident = next(self.ids)
        self.outstanding[ident] = Outstanding(arrays, time.monotonic())
        self._send(ident)
        return ident

    def _send(self, ident: int) -> None:
        request = self.outstanding[ident]
        try:
            self.sock.send_multipart(encode(Message("infer", ident, request.arrays)), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            request.sent = None
            return
        self.resent += request.tries > 0
        request.sent, request.tries = time.monotonic(), request.tries + 1

    def _watch(self) -> None:
        """Connection events: what was in flight when the connection dropped is sent again after
        the next successful handshake (a restarted central knows nothing of it)."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.connected = False
                for request in self.outstanding.values():
                    request.sent = None
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                self.connected = True
                for ident in [i for i, r in self.outstanding.items() if r.sent is None]:
                    self._send(ident)

    def _retry(self, now: float) -> None:
        """Resend what waited `retry_s` without an answer while connected (lost on the way)."""
        if not self.connected:
            return
        for ident, request in list(self.outstanding.items()):
            if request.sent is None or now - request.sent >= self.retry_s:
                self._send(ident)

    def _expired(self, now: float) -> Answer | None:
        for ident, request in self.outstanding.items():
            if now - request.submitted >= self.total_timeout_s:
                del self.outstanding[ident]
                return Answer(
                    ident,
                    None,
                    error=f"timeout: no answer within {self.total_timeout_s:.0f} s ({request.tries} tries)",
                    tries=request.tries,
                    elapsed_ms=(now - request.submitted) * 1e3,
                )
        return None

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, timeout_s: float) -> Answer | None:
        """The next answer to an outstanding request, or its explicit error once its total timeout
        passed; None when neither comes within `timeout_s`. Resends what a reconnect lost."""
        end = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            if (expired := self._expired(now)) is not None:
                return expired
            if now >= end:
                return None
            wait = min(end - now, 0.1)
            ready = dict(self.poller.poll(max(1, int(wait * 1000))))
            if self.monitor in ready:
                self._watch()
            if self.sock in ready and (answer := self._read()) is not None:
                return answer
            self._retry(time.monotonic())

    def _read(self) -> Answer | None:
        try:
            msg = decode(self.sock.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            return None
        except WireError as exc:
            return Answer(-1, None, error=f"malformed answer: {exc}")
        if msg.type == "stats":
            try:
                self.central_stats = from_json(CentralStats, msg.meta.get("stats"))
            except SchemaError as exc:
                return Answer(-1, None, error=f"malformed stats: {exc}")
            return None
        request = self.outstanding.pop(msg.id, None)
        if request is None:
            self.dropped += 1
            return None
        meta = msg.meta
        logits, error = msg.arrays.get("logits"), meta.get("error")
        if logits is None and error is None:  # so that every answer without an error has its logits
            error = "malformed answer: neither logits nor an error"
        return Answer(
            msg.id,
            logits,
            meta.get("present", []),
            meta.get("missing", []),
            meta.get("degraded", False),
            meta.get("timings", {}),
            error,
            meta.get("excluded", {}),
            request.tries,
            (time.monotonic() - request.submitted) * 1e3,
        )

    def infer(self, arrays: dict[str, np.ndarray], timeout_s: float = 10.0) -> Answer | None:
        """The answer to one request, or None when none comes within `timeout_s`."""
        try:
            ident = self.submit(arrays, timeout_s)
        except TimeoutError:
            return None
        end = time.monotonic() + timeout_s
        while (answer := self.receive(max(0.0, end - time.monotonic()))) is not None:
            if answer.id == ident:
                return answer
        self.outstanding.pop(ident, None)  # given up: a late answer is dropped
        return None

    def stats(self, timeout_s: float = 5.0) -> CentralStats | None:
        """What central holds now (its `stats` answer), or None when none comes within `timeout_s`.
        Only on a client with nothing outstanding: answers read meanwhile would have nowhere to go."""
        if self.outstanding:
            raise CofcError("stats() on a client with requests in flight")
        self.central_stats = None
        end = time.monotonic() + timeout_s
        if not self.sock.poll(int(timeout_s * 1000), zmq.POLLOUT):  # no connection (yet)
            return None
        self.sock.send_multipart(encode(Message("stats")), copy=False)
        while self.central_stats is None and (left := end - time.monotonic()) > 0:
            if self.sock.poll(max(1, int(left * 1000))):
                self._read()  # the stats answer; nothing else can come with nothing in flight
        return self.central_stats

    def wait_until_complete(self, arrays: dict[str, np.ndarray], timeout_s: float = 30.0) -> None:
        """Send probes until an answer comes back with every device present (all joined)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.infer(arrays, timeout_s=2)
            if answer is not None and not answer.degraded and answer.error is None:
                return
            time.sleep(0.2)
        raise CofcError(f"the devices did not all join within {timeout_s:.0f} s")

    def stream(self, requests: Iterable[dict[str, np.ndarray]], window: int = 8) -> Iterator[Answer]:
        """Keep up to `window` requests in flight; yield answers as they come (ids say which).
        Every request is answered exactly once, an error answer after the total timeout included."""
        for arrays in requests:
            while len(self.outstanding) >= window:
                if (answer := self.receive(self.total_timeout_s)) is not None:
                    yield answer
            self._submit(arrays)
        while self.outstanding:
            if (answer := self.receive(self.total_timeout_s)) is not None:
                yield answer

    def close(self) -> None:
        """Close the sockets and their context (idempotent)."""
        if not self.ctx.closed:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.sock.close(0)
            self.ctx.term()
