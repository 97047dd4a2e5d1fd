"""A device's own time, when this machine emulates a slower one (`cofc bench --emulate`).

Every step of handling a request (preprocessing, the sub-model, the fusion) takes its thread's
CPU time divided by the device's share of a core, one after the other from the request's
arrival, and the answer leaves when the last is due: so a wait here for a core (the emulated
devices share this machine's cores, which real devices do not) costs nothing while the device's
own schedule is still ahead, and an answer is never sent sooner than it was really computed. ONNX Runtime with one intra-op thread computes
on the calling thread, so its CPU time is the thread's.

Why not a cgroup quota: CFS enforces a quota at scheduler ticks (4 ms at this kernel's HZ=250)
and refills it every period, so a request of a few milliseconds that starts after any idle runs
at full speed whatever the quota (docs/experiments/calibration.md).

A worker emulated on central's own host can count from the moment central sent the request (one
machine, one monotonic clock) plus the request's transfer at its link's rate: without it a wait
for a core before the request is even read is not absorbed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from cofc.errors import CofcError

SHARED_CLOCK_SKEW_S = 5.0  # a send time further than this from now was not taken on this host's clock


def check_share(share: float) -> None:
    if not 0 < share <= 1:
        raise CofcError(f"cpu share {share} must be above 0 and at most 1 (a full core)")


class DeviceClock:
    """The schedule of a device with `share` of a core (None: this machine's own pace, measured
    only), which received a request at `arrived` (time.monotonic()): `due` is when it finishes
    the steps it has been given."""

    def __init__(self, share: float | None, arrived: float | None = None):
        if share is not None:
            check_share(share)
        self.share = share
        self.due = time.monotonic() if arrived is None else arrived

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One step of the device's work: it takes the step's CPU time / share after the last."""
        cpu = time.thread_time()
        yield
        self.due = time.monotonic() if self.share is None else self.due + (time.thread_time() - cpu) / self.share

    def wait(self) -> float:
        """Sleep until the device is done; when that was, or now where this machine was slower."""
        now = time.monotonic()
        if self.due <= now:
            return now
        time.sleep(self.due - now)
        return self.due


def arrival(sent_s: float, request_bytes: int, link_mbps: float) -> float:
    """When a request central sent at `sent_s` on this host's monotonic clock reached a device
    behind a `link_mbps` link. CofcError when `sent_s` cannot be this host's clock (central runs
    elsewhere, where the emulation's shared clock does not exist)."""
    if abs(time.monotonic() - sent_s) > SHARED_CLOCK_SKEW_S:
        raise CofcError(
            f"central's send time is {time.monotonic() - sent_s:+.0f} s from this host's clock: "
            "--emulated-link-mbps emulates a device on central's own host only"
        )
    return sent_s + request_bytes * 8 / (link_mbps * 1e6)
