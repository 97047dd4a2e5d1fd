"""The runtime over real ZeroMQ on loopback: central and workers as separate `cofc run` processes."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import numpy as np
import zmq

from cofc.compiler.models.datasets import load_dataset
from cofc.runtime.backends import open_backend
from cofc.runtime.client import Client
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.keys import KeyPair
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.preprocess import Preprocessor
from cofc.runtime.wire import Message, decode, encode
from cofc.runtime.worker import Worker
from tests.helpers import free_port
from tests.runtime.cluster import mnist_images, requests_for, start


def test_distributed_answers_equal_the_local_pipeline(bundles, cluster):
    images = mnist_images()[:240]
    reqs = requests_for(bundles, images)
    with Client.for_bundle(bundles["orin"]) as client:
        client.wait_until_complete(reqs[0])
        answers = {a.id: a for a in client.stream(reqs)}
    with LocalPipeline(list(bundles.values())) as pipeline:
        reference = pipeline(images)
    assert len(answers) == 240
    ids = sorted(answers)
    got = np.concatenate([answers[i].logits for i in ids])
    assert not any(answers[i].degraded for i in ids)
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)
    timings = answers[ids[-1]].timings
    assert set(timings["t1_ms"]) == {"orin", "tx2", "nano"} and timings["end_to_end_ms"] > 0


def test_killed_worker_degrades_then_rejoins(bundles, cluster):
    """Killing a worker loses no request: the answers after it are degraded, they are exactly the
    fusion without that device, and their accuracy is above chance and within 5 points of the
    healthy cluster's on the same images. The worker, restarted, rejoins without restarting central."""
    test = load_dataset("mnist-5k").test
    images, labels = test.inputs[:1000], np.asarray(test.labels[:1000])
    reqs = requests_for(bundles, images)
    with Client.for_bundle(bundles["orin"]) as client:
        client.wait_until_complete(reqs[0])
        answers = []
        for answer in client.stream(reqs, window=4):
            answers.append(answer)
            if len(answers) == 300:
                cluster["nano"].send_signal(signal.SIGKILL)
        assert len(answers) == 1000 and all(a.error is None for a in answers)  # nothing lost
        cluster["nano"] = start(bundles["nano"])
        client.wait_until_complete(reqs[0])  # it rejoined without restarting central
    first = min(a.id for a in answers)  # ids follow submission order; probes came before
    degraded = sorted((a for a in answers if a.degraded), key=lambda a: a.id)
    assert len(degraded) >= 600 and all(a.missing == ["nano"] for a in degraded)
    index = np.array([a.id - first for a in degraded])
    got = np.concatenate([a.logits for a in degraded])
    present = np.float32([[d.name != "nano" for d in bundles["orin"].fusion.devices]])
    with LocalPipeline(list(bundles.values())) as pipeline:
        features = pipeline.features(images[index])
        healthy = pipeline.fuse(features, np.ones((len(index), present.shape[1]), np.float32))
        without_nano = pipeline.fuse(features, np.repeat(present, len(index), axis=0))
    np.testing.assert_allclose(got, without_nano, atol=1e-4, rtol=0)
    degraded_accuracy = float((got.argmax(1) == labels[index]).mean())
    healthy_accuracy = float((healthy.argmax(1) == labels[index]).mean())
    # The small plan's teacher has random weights, so its fused accuracy is modest (about 0.2 on
    # ten classes): "above chance" is four standard errors of a guesser's accuracy above 1/10.
    chance = 1 / len(bundles["orin"].fusion.classes)
    above_chance = chance + 4 * np.sqrt(chance * (1 - chance) / len(index))
    assert degraded_accuracy > above_chance, (degraded_accuracy, above_chance)
    assert degraded_accuracy >= healthy_accuracy - 0.05, (degraded_accuracy, healthy_accuracy)


def test_wrong_or_missing_key_gets_nothing_through(bundles, cluster):
    endpoint = bundles["orin"].manifest.central.endpoint.on("127.0.0.1")
    server_key = bundles["orin"].manifest.central.public_key
    arrays = requests_for(bundles, mnist_images()[:1])[0]
    strangers = [Client(endpoint, server_key, KeyPair.generate()), Client(endpoint)]  # no CURVE at all
    try:
        for stranger in strangers:
            assert stranger.infer(arrays, timeout_s=2) is None
    finally:
        for stranger in strangers:
            stranger.close()
    # A worker's key is accepted by ZAP but may not submit requests.
    worker_keys = bundles["tx2"].keys()
    with Client(endpoint, server_key, worker_keys) as impostor:
        assert impostor.infer(arrays, timeout_s=2) is None
    with Client.for_bundle(bundles["orin"]) as good:
        good.wait_until_complete(arrays)


def test_refused_client_times_out_instead_of_hanging(tmp_path):
    """A client whose key central's ZAP handler refuses has no connection, and a DEALER blocks on
    send until it has one: every request must still come back as None within its timeout."""
    from zmq.auth.thread import ThreadAuthenticator

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(tmp_path))  # no certificates: every key refused
    server = ctx.socket(zmq.ROUTER)
    server.curve_server = True
    server_key, server.curve_secretkey = zmq.curve_keypair()
    server.curve_publickey = server_key
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = Client(Endpoint("127.0.0.1", port), server_key.decode(), KeyPair.generate())
    try:
        start = time.monotonic()
        for _ in range(8):  # long enough to meet the gaps between failed handshakes and reconnects
            assert client.infer({"image": np.zeros((1, 28, 28), np.uint8)}, timeout_s=0.5) is None
        assert time.monotonic() - start < 8 * 0.5 * 2 + 2
    finally:
        client.close()
        server.close(0)
        auth.stop()
        ctx.term()


def _junk(rng: random.Random) -> list[bytes]:
    choice = rng.randrange(4)
    if choice == 0:
        return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 4))]
    head = {
        "v": 1,
        "type": rng.choice(["infer", "feature", "hello", "request", "answer"]),
        "id": rng.randint(0, 9),
        "arrays": [
            {
                "name": rng.choice(["image", "feature", "utf8"]),
                "dtype": rng.choice(["float32", "uint8"]),
                "shape": [rng.randint(0, 3), rng.randint(0, 30)],
            }
        ],
    }
    if choice == 1:
        head["device"] = rng.choice(["tx2", "nano", "evil"])
        head["digest"] = "0" * 64
    frames = [json.dumps(head).encode()]
    if choice != 3:
        frames.append(rng.randbytes(rng.randint(0, 400)))
    return frames


def test_fuzzed_central_keeps_serving(bundles, cluster):
    rng = random.Random(7)
    central = bundles["orin"].manifest.central
    client_keys = bundles["orin"].client_keys()
    images = mnist_images()[:20]
    with Client.for_bundle(bundles["orin"]) as client:
        # Attack a serving cluster: an attacker that connects while central is still starting can
        # meet libzmq's unretried-handshake case (zeromq/libzmq#3519), and its sends would block.
        client.wait_until_complete(requests_for(bundles, images[:1])[0])
        ctx = zmq.Context()
        attacker = ctx.socket(zmq.DEALER)
        attacker.curve_serverkey, attacker.curve_publickey, attacker.curve_secretkey = (
            central.public_key.encode(),
            client_keys.public.encode(),
            client_keys.secret.encode(),
        )
        attacker.linger = 0
        attacker.sndtimeo = 30_000  # a send that cannot go out fails the test instead of hanging it
        attacker.connect(str(central.endpoint.on("127.0.0.1")))
        try:
            for _ in range(10_000):
                attacker.send_multipart(_junk(rng))
        finally:
            ctx.destroy(linger=0)
        # The junk requests central read are queued like any other: once worked through, what
        # comes next is served (sent behind them, it would be answered `overloaded`, never late).
        end = time.monotonic() + 30
        while (stats := client.stats()) is None or stats.queued:
            assert time.monotonic() < end, f"central still holds {stats}"
        answers = {a.id: a for a in client.stream(requests_for(bundles, images))}
    with LocalPipeline(list(bundles.values())) as pipeline:
        reference = pipeline(images)
    got = np.concatenate([answers[i].logits for i in sorted(answers)])
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)
    assert cluster["orin"].poll() is None


def test_stats_comes_back_as_soon_as_central_answers(bundles, cluster):
    """`Client.stats()` returns on central's answer: it once waited out a 100 ms read each time,
    which held the soak's own loop (and the answers it had to read) 100 ms per stats request."""
    images = mnist_images()[:1]
    with Client.for_bundle(bundles["orin"]) as client:
        client.wait_until_complete(requests_for(bundles, images)[0])
        took = []
        for _ in range(5):
            began = time.monotonic()
            assert client.stats() is not None
            took.append(time.monotonic() - began)
    assert sorted(took)[2] < 0.05, took  # central answers a stats request in about a millisecond


def test_fuzzed_worker_keeps_serving(bundles):
    """Play central to a real worker: 10,000 malformed frames, then a real request."""
    bundle = bundles["tx2"]
    keys = bundles["orin"].keys()
    port = free_port()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey, router.curve_secretkey = keys.public.encode(), keys.secret.encode()
    router.linger = 0
    endpoint = Endpoint("127.0.0.1", port)
    router.bind(str(endpoint))
    worker = Worker(bundle, endpoint=endpoint)
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        identity, *hello = router.recv_multipart()
        assert decode(hello).type == "hello"
        rng = random.Random(3)
        for _ in range(10_000):
            router.send_multipart([identity, *_junk(rng)])
        arrays = requests_for(bundles, mnist_images()[:1])[0]
        router.send_multipart([identity, *encode(Message("request", 99, arrays))], copy=False)
        deadline = time.time() + 30
        feature = None
        while time.time() < deadline and feature is None:
            if router.poll(1000):
                _, *frames = router.recv_multipart()
                msg = decode(frames)
                if msg.type == "feature" and msg.id == 99:
                    feature = msg.arrays["feature"]
        graph_inputs = Preprocessor.for_bundle(bundle).unpack(arrays)
        with open_backend("onnxruntime", bundle.file("backbone.onnx")) as backend:
            want = next(iter(backend.run(graph_inputs).values()))
        np.testing.assert_allclose(feature, want, atol=1e-5)
        assert sum(worker.rejected.values()) > 9_000
    finally:
        stop.set()
        thread.join(5)
        worker.close()
        router.close(0)
        ctx.term()
