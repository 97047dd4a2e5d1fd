"""Emulate a slower CPU device by pacing: every run lasts its own CPU time divided by a share.

Why not a cgroup quota alone: CFS bandwidth control is enforced at scheduler ticks (4 ms at this
kernel's HZ=250) and refills every period, so a request shorter than a few milliseconds that
starts after any idle runs at full speed whatever the quota. Measured on the flagship's slow
sub-model (1.08 ms on a full core) at 0.3 of a core: 1.06-1.12x its full-core time after 1-5 ms
of idle, at periods of 10, 5 and 3.3 ms (the shortest the kernel's 1 ms minimum quota allows),
where a device of 0.3 of that core would take 3.3x. Pacing measures the thread's CPU time (ONNX
Runtime with one intra-op thread computes on the calling thread) and sleeps out the rest, so a
run takes cpu/share whether it is the first after idle or the hundredth back to back; a run
already slowed by contention (wall time above cpu/share) is not slowed further.
"""
from __future__ import annotations

import time

import numpy as np

from cofc.errors import CofcError
from cofc.runtime.backends._base import Backend


class Paced(Backend):
    """`inner`, as a device with `share` of this machine's core would run it (0 < share <= 1)."""

    def __init__(self, inner: Backend, share: float):
        if not 0 < share <= 1:
            raise CofcError(f"cpu share {share} must be above 0 and at most 1 (a full core)")
        super().__init__(inner.model_path)
        self.inner, self.share = inner, share
        self.name = inner.name
        self._inputs, self._outputs = inner.inputs, inner.outputs

    @property
    def version(self) -> str:
        return self.inner.version

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wall, cpu = time.perf_counter(), time.thread_time()
        out = self.inner.run(feeds)
        left = (time.thread_time() - cpu) / self.share - (time.perf_counter() - wall)
        if left > 0:
            time.sleep(left)
        return out

    def _release(self) -> None:
        self.inner.close()
