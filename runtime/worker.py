"""A worker device: computes its sub-model's feature for every request central sends.

It connects (DEALER, CURVE client with its bundle's keys) to the central endpoint and says hello:
device name, plan id and bundle digest. The hello is repeated every HEARTBEAT_S as a heartbeat,
so after either side restarts the worker is known again without anyone restarting it (ZeroMQ
reconnects the socket by itself). It sets no routing identity: central knows it by its key and
learns its connection from the hello that key authenticated. A refusal (wrong plan or bundle) is fatal: it is a deployment
mistake that waiting will not fix.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import zmq

from cofc.errors import CofcError
from cofc.runtime._closing import Closing
from cofc.runtime._sockets import client_socket
from cofc.runtime.backends import check_pacable, open_backend
from cofc.runtime.bundle import Bundle
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.pace import DeviceClock, arrival
from cofc.runtime.preprocess import Preprocessor
from cofc.runtime.wire import Message, Rejections, WireError, decode, encode, match_inputs

HEARTBEAT_S = 0.5
log = logging.getLogger("cofc.worker")


class Worker(Closing):
    """Owns its backend from construction to `close()`: use `with Worker(...) as worker:`.
    `cpu_share` paces each request like a slower device (runtime/pace.py), from its arrival: when
    central sent it plus its transfer at `emulated_link_mbps` where the worker is emulated on
    central's host, else when it is read."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "onnxruntime",
        threads: int = 1,
        insecure: bool = False,
        endpoint: Endpoint | None = None,
        cpu_share: float | None = None,
        emulated_link_mbps: float | None = None,
    ):
        if bundle.role != "worker":
            raise CofcError(f"{bundle.path} is the {bundle.role} bundle, not a worker's")
        self.bundle = bundle
        self.endpoint = endpoint or bundle.manifest.central.endpoint
        self.prep = Preprocessor.for_bundle(bundle)
        self.insecure = insecure
        self.rejected = Rejections(log)
        self.served = 0
        if cpu_share is not None:
            check_pacable(backend, threads)
        self.cpu_share, self.link_mbps = cpu_share, emulated_link_mbps
        self.engine = open_backend(
            backend, bundle.file("backbone.onnx"), threads=threads, precision=bundle.manifest.precision
        )

    def close(self) -> None:
        """Release the backend (idempotent); `serve` closes its own socket."""
        self.engine.close()

    def _hello(self) -> Message:
        return Message(
            "hello", 0, meta={"device": self.bundle.device, "plan": self.bundle.plan_id, "digest": self.bundle.digest}
        )

    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        ctx = zmq.Context()
        sock = client_socket(
            ctx,
            zmq.DEALER,
            None if self.insecure else self.bundle.manifest.central.public_key,
            None if self.insecure else self.bundle.keys(),
        )
        # A new handshake (central restarted) is answered with a hello at once, not at the next
        # heartbeat: until central hears one it sends this worker nothing.
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        sock.connect(str(self.endpoint))
        last_hello = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_hello >= HEARTBEAT_S:
                    sock.send_multipart(encode(self._hello()), copy=False)
                    last_hello = time.monotonic()
                ready = dict(poller.poll(int(HEARTBEAT_S * 1000)))
                if monitor in ready:
                    while monitor.poll(0):
                        monitor.recv_multipart()
                    last_hello = 0.0
                if sock not in ready:
                    continue
                frames = sock.recv_multipart(copy=False)
                try:
                    msg = decode(frames)
                except WireError as exc:
                    self.rejected.add(exc.kind, str(exc))
                    continue
                if msg.type == "request":
                    self._answer(sock, msg, self._arrival(msg, frames))
                elif msg.type == "refuse":
                    raise CofcError(f"central refused this worker: {msg.meta.get('reason', 'no reason given')}")
                elif msg.type != "welcome":
                    self.rejected.add("unexpected-type", msg.type)
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)
            ctx.term()

    def _arrival(self, msg: Message, frames: list[zmq.Frame]) -> float | None:
        """When the request reached this device: None (now) unless emulated on central's host."""
        sent = msg.meta.get("sent_s")
        if self.link_mbps is None or not isinstance(sent, float):
            return None
        return arrival(sent, sum(len(f) for f in frames), self.link_mbps)

    def _answer(self, sock: zmq.Socket[bytes], msg: Message, arrived: float | None) -> None:
        clock = DeviceClock(self.cpu_share, arrived)
        try:
            with clock.step():
                feeds = match_inputs(self.prep.unpack(msg.arrays), self.engine.inputs)
        except WireError as exc:
            self.rejected.add(exc.kind, str(exc))
            return
        ready = clock.due
        with clock.step():
            feature = next(iter(self.engine.run(feeds).values()))
        t1 = (clock.wait() - ready) * 1e3
        out = Message("feature", msg.id, {"feature": np.ascontiguousarray(feature, np.float32)}, {"t1_ms": t1})
        sock.send_multipart(encode(out), copy=False)
        self.served += 1
