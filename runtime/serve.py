"""`cofc run`: start the role a bundle names; on central, optionally answer the inputs of a file or folder."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np

from cofc.runtime.bundle import Bundle
from cofc.runtime.central import Central
from cofc.runtime.client import Client
from cofc.runtime.endpoint import Endpoint
from cofc.runtime.preprocess import Preprocessor
from cofc.runtime.texts import Text
from cofc.runtime.worker import Worker

JOIN_TIMEOUT_S = 10.0
log = logging.getLogger("cofc.central")


def run_worker(
    bundle: Bundle,
    backend: str,
    threads: int,
    insecure: bool,
    connect: Endpoint | None,
    cpu_share: float | None = None,
    emulated_link_mbps: float | None = None,
) -> None:
    with Worker(bundle, backend, threads, insecure, connect, cpu_share, emulated_link_mbps) as worker:
        try:
            worker.serve()
        except KeyboardInterrupt:
            pass


def run_central(
    bundle: Bundle,
    backend: str,
    threads: int,
    insecure: bool,
    bind: Endpoint | None,
    input_path: Path | None,
    text_column: str = "text",
    cpu_share: float | None = None,
    pair_column: str | None = None,
) -> None:
    # The inputs are read first: a bad file is refused before anything starts.
    raw = None if input_path is None else Preprocessor.for_bundle(bundle).read(input_path, text_column, pair_column)
    with Central(bundle, backend, threads, insecure, bind, cpu_share) as central:
        if raw is None:
            try:
                central.serve()
            except KeyboardInterrupt:
                pass
        else:
            _answer(central, raw, insecure)


def _answer(central: Central, raw: np.ndarray | list[Text], insecure: bool) -> None:
    """Serve in a thread while a local client sends every input; print the answers."""
    bundle, prep = central.bundle, central.prep
    stop = threading.Event()
    server = threading.Thread(target=central.serve, args=(stop,), daemon=True)
    server.start()
    central.ready.wait(10)
    if not central.all_joined.wait(JOIN_TIMEOUT_S):
        missing = sorted(set(central.workers) - central.alive())
        log.warning("starting without %s: not joined after %.0f s", ", ".join(missing), JOIN_TIMEOUT_S)
    classes = bundle.fusion.classes
    try:
        with Client.for_bundle(bundle, insecure=insecure) as client:
            requests = (prep.pack(raw[i : i + 1]) for i in range(len(raw)))
            for answer in client.stream(requests):
                row = {
                    "id": answer.id,
                    "degraded": answer.degraded,
                    "missing": answer.missing,
                    "timings": answer.timings,
                }
                if answer.excluded:
                    row["excluded"] = answer.excluded  # not waited for: slow (see the reason)
                if answer.error:
                    row["error"] = answer.error
                else:
                    k = int(answer.logits[0].argmax())
                    row.update(prediction=k, label=classes[k] if classes else str(k), logits=answer.logits[0].tolist())
                sys.stdout.write(json.dumps(row) + "\n")
    finally:
        stop.set()
        server.join(5)
