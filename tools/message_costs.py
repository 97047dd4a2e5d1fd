"""The runtime's own cost per request, measured, for the plan's t2 and t3 (issue 32, lever 1).

Eq. 5 counts a worker's bytes over its link and nothing else, but the bench's t2 also holds the
runtime handling the message: central encodes and sends it over ZeroMQ (CURVE), the worker reads
and decodes it and unpacks the token ids at its CPU share (paced, runtime/pace.py), then encodes
and sends its feature back, and central reads and decodes that. This tool times exactly that
path with the real wire format (runtime/wire.py), real CURVE sockets over loopback and the
worker's real pacing, at zero compute (no sub-model: t1 = 0), so that what remains is the
runtime's fixed cost per message at each device's share. It does so at two request sizes, for a
cost per byte, and times an aggregator-shaped ONNX graph through ONNX Runtime (the fuse step of
t3, which central times unpaced), then writes a `runtime` section into each device's latency
table, which `device_models` reads (compiler/pipeline/context.py):

  message_ms   fixed ms per request for a worker at its table's CPU share (round trip, t1 = 0)
  byte_ms      ms per request byte beyond that
  relay_ms     central's own CPU per worker message (encode and send, read and decode), unpaced
  fuse_ms      one aggregator call through ONNX Runtime, unpaced

  python tools/message_costs.py examples/minilm_20ng_quick.yaml      # all the plan's devices

The link's bytes / rate is not in message_ms: the objective adds it (eq. 5) for each link.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zmq
from tqdm import tqdm

from cofc.compiler.cluster.bench import table_cpu_limit
from cofc.compiler.export.onnx import export_aggregator
from cofc.compiler.models.fusion import Aggregator
from cofc.compiler.models.teacher import teacher_from_plan
from cofc.compiler.plan import load_plan
from cofc.runtime._files import atomic_write_json
from cofc.runtime._sockets import client_socket
from cofc.runtime.backends import open_backend
from cofc.runtime.keys import KeyPair
from cofc.runtime.pace import DeviceClock
from cofc.runtime.preprocess import _padded
from cofc.runtime.wire import Message, decode, encode

WARMUP, REQUESTS = 50, 400
TIMEOUT_MS = 30_000
TOKENS = (128, 2048)  # a full 128-token request as the quick plan sends, and a long one for the slope


@dataclass(frozen=True)
class RuntimeCosts:
    message_ms: float
    byte_ms: float
    relay_ms: float
    fuse_ms: float


def _echo_worker(endpoint: str, server_key: str, share: float, dim: int) -> None:
    """A worker's message path (runtime/worker.py `_answer`) with no sub-model: decode, unpack at
    `share` from the request's send time, wait out the pacing, encode and send a feature."""
    ctx = zmq.Context()
    sock = client_socket(ctx, zmq.DEALER, server_key, KeyPair.generate())
    sock.connect(endpoint)
    sock.send_multipart(encode(Message("hello", 0)))
    feature = np.zeros((1, dim), np.float32)
    while True:
        msg = decode(sock.recv_multipart(copy=False))
        if msg.type != "request":
            break
        clock = DeviceClock(share, msg.meta["sent_s"])
        with clock.step():
            _padded(msg.arrays["token_ids"], msg.arrays["token_counts"], len(msg.arrays["token_ids"]), 0)
        clock.wait()
        sock.send_multipart(encode(Message("feature", msg.id, {"feature": feature}, {"t1_ms": 0.0})), copy=False)
    sock.close(0)
    ctx.term()


def _round_trips(share: float, dim: int, tokens: int, requests: int) -> tuple[float, float]:
    """Median round trip (ms) of `requests` messages of `tokens` token ids to a paced echo worker,
    and the median of central's own CPU per message (ms)."""
    keys = KeyPair.generate()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger, sock.curve_server = 0, True
    sock.curve_publickey, sock.curve_secretkey = keys.public.encode(), keys.secret.encode()
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.rcvtimeo = TIMEOUT_MS  # a worker that died never answers: fail, do not hang
    echo = ["--echo", f"tcp://127.0.0.1:{port}", keys.public, str(share), str(dim)]
    worker = subprocess.Popen([sys.executable, __file__, *echo])
    identity = sock.recv_multipart()[0]  # its hello
    arrays = {"token_ids": np.arange(tokens, dtype=np.uint16), "token_counts": np.array([tokens], np.int64)}
    trips, cpu = [], []
    for i in range(WARMUP + requests):
        start, cpu0 = time.monotonic(), time.thread_time()
        sock.send_multipart([identity, *encode(Message("request", i, arrays, {"sent_s": start}))], copy=False)
        sent_cpu = time.thread_time() - cpu0
        frames = sock.recv_multipart(copy=False)
        cpu1 = time.thread_time()
        decode(frames[1:])
        if i >= WARMUP:
            trips.append((time.monotonic() - start) * 1e3)
            cpu.append((sent_cpu + time.thread_time() - cpu1) * 1e3)
    sock.send_multipart([identity, *encode(Message("ping", 0))])
    worker.wait(10)
    sock.close(0)
    ctx.term()
    return statistics.median(trips), statistics.median(cpu)


def _fuse_ms(aggregator: Aggregator, gap_s: float = 0.005, calls: int = 200) -> float:
    """Median of single aggregator calls through ONNX Runtime, 1 thread, each after `gap_s` idle:
    central fuses once per request, after waiting on its workers, never back to back (which
    times a warm cache and reads about a third of what the bench does)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_backend("onnxruntime", export_aggregator(aggregator.eval(), Path(tmp) / "agg.onnx"), threads=1)
        dims = aggregator.dims
        feeds = {"features": np.zeros((1, sum(dims)), np.float32), "mask": np.ones((1, len(dims)), np.float32)}
        samples = []
        for _ in range(calls):
            time.sleep(gap_s)
            start = time.perf_counter()
            engine.run(feeds)
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)


def measure(share: float, dim: int, aggregator: Aggregator, requests: int) -> RuntimeCosts:
    (short, relay), (long, _) = (_round_trips(share, dim, t, requests) for t in TOKENS)
    request_bytes = [t * np.dtype(np.uint16).itemsize for t in TOKENS]
    byte_ms = max(0.0, (long - short) / (request_bytes[1] - request_bytes[0]))
    return RuntimeCosts(short - byte_ms * request_bytes[0], byte_ms, relay, _fuse_ms(aggregator))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", type=Path, nargs="?")
    ap.add_argument("--requests", type=int, default=REQUESTS)
    ap.add_argument("--echo", nargs=4, metavar=("ENDPOINT", "KEY", "SHARE", "DIM"), help="run as the echo worker")
    args = ap.parse_args()
    if args.echo:
        endpoint, key, share, dim = args.echo
        return _echo_worker(endpoint, key, float(share), int(dim))
    if args.plan is None:
        ap.error("a plan is needed")
    plan = load_plan(args.plan)
    teacher = teacher_from_plan(plan)
    base = teacher.spec
    # the teacher's own head behind features as wide as its width (C2's most), split evenly
    aggregator = Aggregator(
        [base.dim // len(plan.devices)] * len(plan.devices), base.dim, teacher.adapter.head(teacher.model)
    )
    for d in tqdm(plan.devices, desc="devices"):
        share = table_cpu_limit(d.profile).share
        costs = measure(share, base.dim // len(plan.devices), aggregator, args.requests)
        table = json.loads(d.profile.read_text())
        table["runtime"] = {
            **asdict(costs),
            "cpu_share": share,
            "requests": args.requests,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": f"python tools/message_costs.py {args.plan}",
        }
        atomic_write_json(d.profile, table)
        print(f"{d.name} (share {share}): {costs}")


if __name__ == "__main__":
    main()
