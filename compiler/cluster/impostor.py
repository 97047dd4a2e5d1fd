"""A peer that holds only the client key (the central bundle's client.json) and tries to pass for
a worker: the outside check of issue #18 that who sent a message is decided by the CURVE key that
authenticated it, never by a routing identity or a device name a peer chose.

It connects with the routing identity it is given and/or says hello as a worker (with the digest
central's manifest lists for it), answers every request it receives with a huge feature, and
sprays such features for small request ids. Central must send it no request and no answer may
change: `tests/runtime/test_trust.py` and `cofc bench --soak` run it beside a serving cluster."""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from cofc.runtime.bundle import Bundle
from cofc.runtime.wire import Message, WireError, decode, encode

HUGE = 1e6  # a forged feature's every value: an answer fused from one would be far off


class Impostor(threading.Thread):
    """A client-key DEALER that tries to pass for worker `name` and forges its features, every
    `every_s` saying hello (when `hello`) and sending forged features for ids 1..`spray`."""

    def __init__(
        self,
        central: Bundle,
        name: str,
        identity: bytes | None = None,
        hello: bool = True,
        spray: int = 1500,
        every_s: float = 0.3,
    ):
        super().__init__(daemon=True)
        manifest, self.keys = central.manifest, central.client_keys()
        self.endpoint = str(manifest.central.endpoint.on("127.0.0.1"))
        self.server_key = manifest.central.public_key
        self.identity, self.spray, self.every_s = identity, spray, every_s
        worker = {w.name: w for w in central.fusion.workers}[name]
        self.hello = (
            Message("hello", 0, meta={"device": name, "plan": central.plan_id, "digest": worker.digest})
            if hello
            else None
        )
        self.dim = {d.name: d.feature_dim for d in central.fusion.devices}[name]
        self.requests = 0  # requests central sent it: must stay 0
        self.sent = 0  # hellos and forged features central took from it
        self.stop = threading.Event()

    def _feature(self, rid: int) -> list:
        return encode(Message("feature", rid, {"feature": np.full((1, self.dim), HUGE, np.float32)}, {"t1_ms": 0.1}))

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger, sock.sndtimeo = 0, 2000
        sock.curve_serverkey = self.server_key.encode()
        sock.curve_publickey, sock.curve_secretkey = self.keys.public.encode(), self.keys.secret.encode()
        if self.identity is not None:
            sock.identity = self.identity
        sock.connect(self.endpoint)
        last_spray = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() - last_spray > self.every_s:
                    if self.hello is not None:
                        self._send(sock, encode(self.hello))
                    for rid in range(1, self.spray + 1):  # central's request ids once counted up from 1
                        self._send(sock, self._feature(rid))
                    last_spray = time.monotonic()
                if sock.poll(50):
                    try:
                        msg = decode(sock.recv_multipart(copy=False))
                    except WireError:
                        continue
                    if msg.type == "request":
                        self.requests += 1
                        self._send(sock, self._feature(msg.id))
        finally:
            ctx.destroy(linger=0)

    def _send(self, sock: zmq.Socket, frames: list) -> None:
        try:
            sock.send_multipart(frames, copy=False)
            self.sent += 1
        except zmq.Again:
            pass
