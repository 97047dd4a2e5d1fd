"""Wire format: round trip, zero-copy over real ZeroMQ, and ≥10,000 malformed frame sets rejected
with a kind (never any other exception)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import zmq

from cofc.runtime.wire import Message, WireError, decode, encode


def roundtrip(msg: Message) -> Message:
    return decode([bytes(f) for f in encode(msg)])


def test_round_trip_keeps_arrays_and_meta():
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    ids = np.arange(12, dtype=np.int64).reshape(2, 6)
    got = roundtrip(Message("request", 42, {"pixel_values": x, "input_ids": ids}, {"deadline_ms": 200}))
    assert got.type == "request" and got.id == 42 and got.meta == {"deadline_ms": 200}
    np.testing.assert_array_equal(got.arrays["pixel_values"], x)
    np.testing.assert_array_equal(got.arrays["input_ids"], ids)


def test_over_real_zeromq_pair():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    big = np.random.default_rng(1).standard_normal((197, 192)).astype(np.float32)  # > 64 KiB: zero-copy
    a.send_multipart(encode(Message("feature", 7, {"feature": big})), copy=False)
    got = decode(b.recv_multipart(copy=False))
    np.testing.assert_array_equal(got.arrays["feature"], big)
    a.close(0), b.close(0)


def _valid_frames(rng: random.Random) -> list[bytes]:
    arr = np.zeros((rng.randint(1, 4), rng.randint(1, 5)), np.float32)
    return [bytes(f) for f in encode(Message(rng.choice(["request", "feature"]), rng.randint(0, 99), {"x": arr}))]


def _mutate(frames: list[bytes], rng: random.Random) -> list[bytes]:
    head = json.loads(frames[0])
    choice = rng.randrange(12)
    if choice == 0:
        return [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(0, 4))]
    if choice == 1:
        head["v"] = rng.choice([0, 2, "1", None])
    elif choice == 2:
        head["type"] = rng.choice(["exec", "", 5, None])
    elif choice == 3:
        head["arrays"][0]["dtype"] = rng.choice(["object", "float128", "<f4", 3, "V8"])
    elif choice == 4:
        head["arrays"][0]["shape"] = rng.choice([[-1], [2**40], "3", [1.5], [True], [1] * 9])
    elif choice == 5:
        head["arrays"][0]["shape"] = [rng.randint(1, 9), rng.randint(1, 9)]
    elif choice == 6:
        return frames[:1] + frames[1:] + [b"extra"]
    elif choice == 7:
        return frames[:1]
    elif choice == 8:
        return [frames[0][: rng.randint(0, len(frames[0]) - 1)], *frames[1:]]
    elif choice == 9:
        head["id"] = rng.choice([-1, 2**70, "7", True, 1.5])
    elif choice == 10:
        return [b" " * 5000, *frames[1:]]
    else:
        head["arrays"] = rng.choice([{}, [1], [{"name": 3}], "x"])
    return [json.dumps(head).encode(), *frames[1:]]


def test_fuzz_rejects_every_malformed_frame_set_by_kind():
    rng = random.Random(1234)
    kinds: dict[str, int] = {}
    accepted = 0
    for _ in range(10_000):
        frames = _mutate(_valid_frames(rng), rng)
        try:
            decode(frames)
            accepted += 1  # some mutations leave a valid message (e.g. a shape that still fits)
        except WireError as exc:
            kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
    assert sum(kinds.values()) + accepted == 10_000
    assert sum(kinds.values()) > 9_000
    assert {
        "bad-version",
        "bad-type",
        "bad-dtype",
        "bad-shape",
        "size-mismatch",
        "frame-count",
        "bad-header",
        "oversized-header",
        "bad-id",
    } <= set(kinds)


def test_oversized_payload_is_refused_before_reading_it():
    header = json.dumps(
        {"v": 1, "type": "request", "id": 1, "arrays": [{"name": "x", "dtype": "float32", "shape": [1 << 20, 64]}]}
    ).encode()
    with pytest.raises(WireError) as info:
        decode([header, b""])
    assert info.value.kind == "oversized"
