"""A backend run as a device with a share of this machine's core would run it (runtime/pace.py):
each run lasts its CPU time / share, whether it is the first after idle or the hundredth back to
back; a run already slowed by contention is not slowed further. `cofc profile` and the bench's
teacher alone measure through it; a device's runtime paces its whole request instead."""

from __future__ import annotations

import numpy as np

from cofc.runtime.backends._base import Backend
from cofc.runtime.pace import DeviceClock, check_share


class Paced(Backend):
    """`inner`, as a device with `share` of this machine's core would run it (0 < share <= 1)."""

    def __init__(self, inner: Backend, share: float):
        check_share(share)
        super().__init__(inner.model_path)
        self.inner, self.share = inner, share
        self.name = inner.name
        self._inputs, self._outputs = inner.inputs, inner.outputs

    @property
    def version(self) -> str:
        return self.inner.version

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clock = DeviceClock(self.share)
        with clock.step():
            out = self.inner.run(feeds)
        clock.wait()
        return out

    def _release(self) -> None:
        self.inner.close()
