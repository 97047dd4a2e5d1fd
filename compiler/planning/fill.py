"""No idle device (issue 32, lever 2): grow the searched policy's members into the time eq. 3
already waits for.

Eq. 3's T is the slowest device's t1 + t2 (plus t3), so a device that answers sooner than the
slowest one sits idle for the difference, and Ψ = L_val + δ·T gives the search no reason to make
it larger: its size does not move T. On the strong 20NG build the fast device measured 2.95 ms
while the slow one took 5.77 ms. `fill` gives each member the largest steps of the search's own
encoding (one more layer, head, width or MLP unit) that keep its predicted t1 + t2 within that
critical path and the whole policy within C1–C6 (eq. 8), round by round over the devices so that
the shared budgets (C2–C4) are split, not taken by the first device. T moves only by eq. 6's
aggregation of the wider features (microseconds). Pure: a policy in, a policy out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cofc.compiler.planning.objective import DeviceModel, Policy, device_ms, violations
from cofc.compiler.planning.search import SearchSpace
from cofc.compiler.planning.spec import flops

STEPS = np.eye(4, dtype=np.int64)  # one more unit of l_n, d_n, h̄_n, D̄_n


def fill(policy: Policy, devices: Sequence[DeviceModel], space: SearchSpace, input_bytes: int = 0) -> Policy:
    """`policy` with each member grown, one step of the encoding per device per round, to the
    feasible step with the most FLOPs whose t1 + t2 stays within the policy's critical path,
    until no device can take a step."""
    critical = max(device_ms(d, policy, n, space.base, input_bytes) for n, d in enumerate(devices))
    x = space.encode(policy)
    grown = True
    while grown:
        grown = False
        for n, d in enumerate(devices):
            best: tuple[float, np.ndarray] | None = None
            for step in STEPS:
                y = x.copy()
                y[4 * n : 4 * n + 4] += step
                if (y > space.upper).any():
                    continue
                candidate = space.decode(y.tolist())
                if (
                    violations(candidate, devices, space.base)
                    or device_ms(d, candidate, n, space.base, input_bytes) > critical
                ):
                    continue
                size = float(flops(candidate[n], space.base))
                if best is None or size > best[0]:
                    best = (size, y)
            if best is not None:
                x, grown = best[1], True
    return space.decode(x.tolist())
