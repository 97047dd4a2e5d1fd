"""A worker persistently slower than the deadline allows is planned around (issue #18, item 3):
central answers from the others at once, probes it every k-th request, and takes it back once
its probes are fast again."""

from __future__ import annotations

import signal
import statistics
import threading
import time

from cofc.runtime.client import Client
from tests.runtime.cluster import mnist_images, requests_for

ALIVE_S = 2.0  # central's: a worker silent this long is not sent requests at all
DEADLINE_MS = 300  # the small plan's: waiting for nano would cost this much per request


class Bursts(threading.Thread):
    """Stops a process for `stop_s`, lets it run `run_s`, again and again: alive (its heartbeats
    get through), but late for nearly every request."""

    def __init__(self, proc, stop_s: float = 0.8, run_s: float = 0.05):
        super().__init__(daemon=True)
        self.proc, self.stop_s, self.run_s = proc, stop_s, run_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.proc.send_signal(signal.SIGSTOP)
            self.done.wait(self.stop_s)
            self.proc.send_signal(signal.SIGCONT)
            time.sleep(self.run_s)
        self.proc.send_signal(signal.SIGCONT)


def e2e_ms(answers, q: int) -> float:
    """The q-th percentile of the answers' end-to-end times."""
    return statistics.quantiles((a.timings["end_to_end_ms"] for a in answers), n=100)[q - 1]


def n_minus_1(client, proc, reqs) -> list:
    """The healthy cluster's N-1 answers: `proc` stopped long enough that central sends it nothing."""
    proc.send_signal(signal.SIGSTOP)
    time.sleep(ALIVE_S + 0.5)
    try:
        answers = list(client.stream(reqs, window=1))
    finally:
        proc.send_signal(signal.SIGCONT)
    client.wait_until_complete(reqs[0])
    assert all(a.missing == ["nano"] and not a.excluded for a in answers)
    return answers


def test_slow_worker_is_not_waited_for_and_is_taken_back(bundles, cluster):
    reqs = requests_for(bundles, mnist_images()[:300])
    with Client.for_bundle(bundles["orin"]) as client:
        client.wait_until_complete(reqs[0])
        without = n_minus_1(client, cluster["nano"], reqs[:200])

        bursts = Bursts(cluster["nano"])
        bursts.start()
        try:
            slow = list(client.stream(reqs, window=1))
        finally:
            bursts.done.set()
            bursts.join(5)
        settled = slow[50:]  # after the first requests showed it slow
        excluded = [a for a in settled if "nano" in a.excluded]
        assert len(excluded) >= 0.8 * len(settled), f"only {len(excluded)} of {len(settled)} left nano out"
        assert all(a.degraded and a.missing == ["nano"] and a.error is None for a in excluded)
        reason = excluded[0].excluded["nano"]
        assert reason.startswith("slow: ") and f"{DEADLINE_MS} ms" in reason, reason
        # Not waited for: had central waited for nano, most answers would take the deadline.
        assert e2e_ms(settled, 90) < DEADLINE_MS / 10, e2e_ms(settled, 90)
        while_slow = e2e_ms(settled, 50)

        # Recovered: its probes are fast again, and central waits for it again.
        recovered, end = [], time.monotonic() + 30
        while time.monotonic() < end and (len(recovered) < 30 or any(a.degraded for a in recovered[-30:])):
            recovered += client.stream(reqs[:50], window=1)
        assert not any(a.degraded for a in recovered[-30:]), [a.excluded for a in recovered[-30:]][:3]
        without += n_minus_1(client, cluster["nano"], reqs[:200])  # before and after: the machine's load drifts
    healthy_n1 = e2e_ms(without, 50)
    # The "within 20% of the N-1 median", plus a quarter millisecond: these answers take
    # about 1 ms, and on a busy 2-core machine scheduling alone moves a median by 0.2 ms.
    assert while_slow <= 1.2 * healthy_n1 + 0.25, (while_slow, healthy_n1)
    print(f"median: N-1 {healthy_n1:.2f} ms; while nano is slow {while_slow:.2f} ms; reason {reason!r}")
