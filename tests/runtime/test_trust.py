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

import time

import numpy as np

from cofc.compiler.cluster.impostor import Impostor
from cofc.runtime.client import Client
from cofc.runtime.pipeline import LocalPipeline
from tests.runtime.cluster import mnist_images, requests_for


def test_client_key_can_neither_receive_requests_nor_forge_features(bundles, cluster):
    images = mnist_images()[:200]
    reqs = requests_for(bundles, images)
    central = bundles["orin"]
    attackers = [Impostor(central, "tx2", identity=b"tx2", hello=False), Impostor(central, "tx2", identity=b"nano")]
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
