"""The client against a hand-played central on loopback: what it makes of answers central should never send."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from cofc.runtime.client import Client
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.wire import Message, decode, encode


def test_an_answer_with_neither_logits_nor_an_error_is_reported_malformed():
    ctx = zmq.Context()
    server = ctx.socket(zmq.ROUTER)
    server.linger = 0
    port = server.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Client(Endpoint("127.0.0.1", port)) as client:
            ident = client.submit({"image": np.zeros((1, 28, 28), np.uint8)}, timeout_s=5)
            assert server.poll(5000), "the request never reached the hand-played central"
            identity, *frames = server.recv_multipart()
            request = decode(frames)
            server.send_multipart([identity, *encode(Message("answer", request.id, meta={"present": ["orin"]}))])
            answer = client.receive(timeout_s=5)
    finally:
        server.close()
        ctx.term()
    assert answer is not None and answer.id == ident
    assert answer.logits is None
    assert answer.error == "malformed answer: neither logits nor an error"


def test_a_server_key_without_a_key_pair_is_refused():
    with pytest.raises(ValueError, match="key pair"):
        Client(Endpoint("127.0.0.1", 1), server_key="x" * 40)
