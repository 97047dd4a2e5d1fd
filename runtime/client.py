"""A small client for the central device: submit model inputs, receive answers (pipelined)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import zmq

from cofc.errors import CofcError
from cofc.runtime._closing import Closing
from cofc.runtime._sockets import client_socket
from cofc.runtime.bundle import Bundle
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.keys import KeyPair
from cofc.runtime.wire import Message, WireError, decode, encode


@dataclass
class Answer:
    id: int
    logits: np.ndarray | None
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    degraded: bool = False
    timings: dict = field(default_factory=dict)
    error: str | None = None


class Client(Closing):
    """A DEALER socket to central; `with Client(...) as client:` closes it."""

    def __init__(self, endpoint: Endpoint, server_key: str | None = None, keys: KeyPair | None = None):
        self.ctx = zmq.Context()
        self.sock = client_socket(self.ctx, zmq.DEALER, server_key, keys)
        self.sock.connect(str(endpoint))
        self.ids = itertools.count(1)

    @classmethod
    def for_bundle(cls, bundle: Bundle, endpoint: Endpoint | None = None, insecure: bool = False) -> Client:
        """A client on the central device (by default at its bundle's port on 127.0.0.1), with the
        client key its bundle carries."""
        central = bundle.manifest.central
        endpoint = endpoint or central.endpoint.on("127.0.0.1")
        if insecure:
            return cls(endpoint)
        return cls(endpoint, central.public_key, bundle.client_keys())

    def submit(self, arrays: dict[str, np.ndarray], timeout_s: float = 10.0) -> int:
        """Queue one request; TimeoutError when central takes none within `timeout_s`. A DEALER
        blocks on send while it has no connection, which is the state of a client whose keys
        central refused: without the wait it would hang there."""
        if not self.sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            raise TimeoutError(f"central accepted no request within {timeout_s} s")
        ident = next(self.ids)
        self.sock.send_multipart(encode(Message("infer", ident, arrays)), copy=False)
        return ident

    def receive(self, timeout_s: float) -> Answer | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        try:
            msg = decode(self.sock.recv_multipart(copy=False))
        except WireError as exc:
            return Answer(-1, None, error=f"malformed answer: {exc}")
        meta = msg.meta
        return Answer(msg.id, msg.arrays.get("logits"), meta.get("present", []), meta.get("missing", []),
                      meta.get("degraded", False), meta.get("timings", {}), meta.get("error"))

    def infer(self, arrays: dict[str, np.ndarray], timeout_s: float = 10.0) -> Answer | None:
        """The answer to one request, or None when none comes within `timeout_s`."""
        try:
            ident = self.submit(arrays, timeout_s)
        except TimeoutError:
            return None
        while (answer := self.receive(timeout_s)) is not None:
            if answer.id == ident:
                return answer
        return None

    def wait_until_complete(self, arrays: dict[str, np.ndarray], timeout_s: float = 30.0) -> None:
        """Send probes until an answer comes back with every device present (all joined)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.infer(arrays, timeout_s=2)
            if answer is not None and not answer.degraded and answer.error is None:
                return
            time.sleep(0.2)
        raise CofcError(f"the devices did not all join within {timeout_s:.0f} s")

    def stream(self, requests: Iterable[dict[str, np.ndarray]], window: int = 8,
               timeout_s: float = 10.0) -> Iterator[Answer]:
        """Keep up to `window` requests in flight; yield answers as they come (ids say which)."""
        in_flight = 0
        for arrays in requests:
            while in_flight >= window:
                answer = self.receive(timeout_s)
                if answer is None:
                    raise TimeoutError(f"no answer within {timeout_s} s")
                in_flight -= 1
                yield answer
            self.submit(arrays, timeout_s)
            in_flight += 1
        while in_flight:
            answer = self.receive(timeout_s)
            if answer is None:
                raise TimeoutError(f"no answer within {timeout_s} s")
            in_flight -= 1
            yield answer

    def close(self) -> None:
        """Close the socket and its context (idempotent)."""
        if not self.ctx.closed:
            self.sock.close(0)
            self.ctx.term()
