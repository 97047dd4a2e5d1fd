"""Who sent a message is decided by the CURVE key that authenticated it, never by a routing
identity or a device name a peer chose (issue #18, item 1).

A peer holding only the client key (the central bundle's client.json) connects while a healthy
cluster serves: once with routing identity b"tx2", once saying hello as tx2 with tx2's digest
(which the central manifest lists). Both answer every request they receive with a huge feature,
and spray such features for small request ids (central's ids counted from 1 before they were
randomised). They must receive no request and change no
answer: the answers equal the local pipeline's on the same inputs, none degraded.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from cofc.runtime.client import Client
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.wire import Message, WireError, decode, encode
from tests.runtime.cluster import mnist_images, requests_for

HUGE = 1e6


class Attacker(threading.Thread):
    """A client-key DEALER that tries to pass for tx2 and forges tx2's features."""

    def __init__(self, central_bundle, identity: bytes | None, hello_as: str | None):
        super().__init__(daemon=True)
        manifest, keys = central_bundle.manifest, central_bundle.client_keys()
        self.endpoint = str(manifest.central.endpoint.on("127.0.0.1"))
        self.server_key, self.keys = manifest.central.public_key, keys
        self.identity, self.hello_as = identity, hello_as
        worker = {w.name: w for w in central_bundle.fusion.workers}["tx2"]
        self.hello = Message(
            "hello", 0, meta={"device": hello_as, "plan": central_bundle.plan_id, "digest": worker.digest}
        )
        self.dim = {d.name: d.feature_dim for d in central_bundle.fusion.devices}["tx2"]
        self.requests = 0
        self.stop = threading.Event()

    def forged(self, rid: int) -> list:
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
                if time.monotonic() - last_spray > 0.3:
                    self._send(sock, encode(self.hello)) if self.hello_as else None
                    for rid in range(1, 1500):  # central's request ids count up from 1
                        self._send(sock, self.forged(rid))
                    last_spray = time.monotonic()
                if sock.poll(50):
                    try:
                        msg = decode(sock.recv_multipart(copy=False))
                    except WireError:
                        continue
                    if msg.type == "request":
                        self.requests += 1
                        self._send(sock, self.forged(msg.id))
        finally:
            ctx.destroy(linger=0)

    @staticmethod
    def _send(sock: zmq.Socket, frames: list) -> None:
        try:
            sock.send_multipart(frames, copy=False)
        except zmq.Again:
            pass


def test_client_key_can_neither_receive_requests_nor_forge_features(bundles, cluster):
    images = mnist_images()[:200]
    reqs = requests_for(bundles, images)
    central = bundles["orin"]
    attackers = [Attacker(central, b"tx2", None), Attacker(central, b"nano", "tx2")]
    with Client.for_bundle(central) as client:
        client.wait_until_complete(reqs[0])
        for attacker in attackers:
            attacker.start()
        time.sleep(1.5)  # the attackers are connected, have said hello, are spraying
        try:
            answers = {a.id: a for a in client.stream(reqs, window=4)}
        finally:
            for attacker in attackers:
                attacker.stop.set()
            for attacker in attackers:
                attacker.join(10)
    with LocalPipeline(list(bundles.values())) as pipeline:
        reference = pipeline(images)
    assert [a.requests for a in attackers] == [0, 0], "a client key received a worker's requests"
    ids = sorted(answers)
    # Central keeps its deadline under the flood: a request still queued at it is answered
    # `overloaded` (explicit, never late); every other answer must be the cluster's own.
    errors = [answers[i].error for i in ids if answers[i].error is not None]
    assert len(ids) == len(images) and all(e.startswith("overloaded") for e in errors), errors[:3]
    served = [i for i in ids if answers[i].error is None]
    assert len(served) >= len(ids) // 2, f"only {len(served)} of {len(ids)} served under the flood"
    assert not any(answers[i].degraded for i in served), [answers[i].missing for i in served if answers[i].degraded][:3]
    got = np.concatenate([answers[i].logits for i in served])
    np.testing.assert_allclose(got, reference[[ids.index(i) for i in served]], atol=1e-4, rtol=0)
    cluster["orin"].kill()
    _, log = cluster["orin"].communicate(timeout=10)
    assert "rejected (not-a-worker)" in log  # counted, not silently dropped
