"""No request is lost to a central restart (issue #18, item 2): the client keeps what central has
not answered and sends it again once central is back; every request ends in exactly one answer."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np

from cofc.runtime.client import Client
from cofc.runtime.pipeline import LocalPipeline
from tests.runtime.cluster import mnist_images, requests_for, start

N, KILL_AT, RESTART_AFTER = 600, 200, 20


def test_central_killed_and_restarted_mid_stream_loses_no_request(bundles, cluster):
    images = mnist_images()[:N]
    reqs = requests_for(bundles, images)
    workers = {n: cluster[n].pid for n in ("tx2", "nano")}
    restarted = threading.Event()
    with Client.for_bundle(bundles["orin"], total_timeout_s=60) as client:
        client.wait_until_complete(reqs[0])
        first = next(client.ids) + 1  # ids follow submission order

        def paced():
            """The requests; kills central when a third are submitted and restarts it (same bundle,
            same port) after roughly the time 20 more requests took before."""
            began = time.monotonic()
            for i, arrays in enumerate(reqs):
                if i == KILL_AT:
                    per_request = (time.monotonic() - began) / KILL_AT
                    cluster["orin"].send_signal(signal.SIGKILL)
                    cluster["orin"].wait()
                    threading.Timer(RESTART_AFTER * per_request, restart).start()
                yield arrays

        def restart():
            cluster["orin"] = start(bundles["orin"])
            restarted.set()

        answers = list(client.stream(paced(), window=8))
        handshakes, resent = client.handshakes, client.resent
        client.wait_until_complete(reqs[0], timeout_s=20)  # the workers rejoined the new central
    assert restarted.is_set()
    ids = [a.id for a in answers]
    assert len(ids) == N and sorted(ids) == list(range(first, first + N)), "a request lost or answered twice"
    errors = [a for a in answers if a.error]
    assert not errors, errors[:3]  # all came back well within the total timeout
    assert handshakes >= 2 and resent >= 1  # it noticed central was back and sent again what was lost
    assert all(cluster[n].pid == pid and cluster[n].poll() is None for n, pid in workers.items())
    by_id = sorted(answers, key=lambda a: a.id)
    with LocalPipeline(list(bundles.values())) as pipeline:
        features = pipeline.features(images)
        names = [d.name for d in bundles["orin"].fusion.devices]
        for a in by_id:  # each answer is the fusion of exactly the devices it says were present
            mask = np.float32([[n in a.present for n in names]])
            want = pipeline.fuse([f[a.id - first : a.id - first + 1] for f in features], mask)
            np.testing.assert_allclose(a.logits, want, atol=1e-4, rtol=0)
