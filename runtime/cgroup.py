"""Cap CPU with a cgroup quota, to emulate a slower device on one Linux box.

cgroup v1 (`cpu.cfs_quota_us`) or v2 (`cpu.max`), whichever is mounted; root only. Groups are
removed when closed, also when the body raises or is interrupted. Where the machine refuses, the
error says why; callers decide whether to run unshaped.

The quota is enforced per period: with the kernel's 100 ms default, a request shorter than the
quota runs at full speed after idle, so an emulated device looks fast on single requests and slow
only under load. A 10 ms period slows requests of tens of milliseconds like sustained load (issue
#17: MiniLM at 0.3 of a core, 54.5 ms alone -> 210 ms), but not those of a few milliseconds, which
the kernel's tick-granular enforcement lets through at full speed whatever the period; new tables
and benches therefore pace each inference instead (runtime/backends/_paced.py). A table records
how it was measured: paced, or under a quota and its period (one without a period: 100 ms).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cofc.errors import CofcError

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
LEGACY_PERIOD_US = 100_000  # the kernel default, which tables without a recorded period used


@dataclass(frozen=True)
class CpuLimit:
    """`share` of one core (1.0 = a full core): paced inferences where `period_us` is None, else a
    cgroup quota enforced every `period_us` microseconds."""

    share: float
    period_us: int | None = None
    UNLIMITED: ClassVar[dict[str, Any]] = {"cpu_share": None, "cpu_period_us": None, "cpu_emulation": None}

    def __post_init__(self) -> None:
        if not 0 < self.share <= (1 if self.paced else 64):
            raise CofcError(f"cpu share {self.share} must be above 0 and at most 1 when paced (1.0 is one full core)")
        if self.period_us is not None and not 1_000 <= self.period_us <= 1_000_000:
            raise CofcError(f"cpu period {self.period_us} us must be between 1 ms and 1 s")

    @property
    def paced(self) -> bool:
        return self.period_us is None

    @property
    def pace(self) -> float | None:
        """The share each inference is paced to (`open_backend`'s cpu_share); None under a quota."""
        return self.share if self.paced else None

    @classmethod
    def of_table(cls, provenance: dict[str, Any]) -> CpuLimit | None:
        """The limit a latency table was measured under (None: a whole, unlimited machine)."""
        share = provenance.get("cpu_share")
        if not share:
            return None
        if provenance.get("cpu_emulation") == "paced":
            return cls(float(share))
        return cls(float(share), int(provenance.get("cpu_period_us") or LEGACY_PERIOD_US))

    def provenance(self) -> dict[str, Any]:
        """How a table records this limit (read back by `of_table`)."""
        return {
            "cpu_share": self.share,
            "cpu_period_us": self.period_us,
            "cpu_emulation": "paced" if self.paced else "cgroup",
        }


def _layout() -> tuple[Path, str]:
    if (V1 / "cpu.cfs_quota_us").exists():
        return V1, "v1"
    if (V2 / "cgroup.controllers").exists() and "cpu" in (V2 / "cgroup.controllers").read_text().split():
        return V2, "v2"
    raise CofcError("cannot cap CPU here: no cgroup cpu controller is mounted (v1 cpu or v2 cpu.max)")


class CpuGroup:
    """A cgroup holding its processes to a `CpuLimit`."""

    def __init__(self, limit: CpuLimit, name: str):
        if limit.paced:
            raise CofcError("a paced cpu limit has no cgroup quota; open the backend with its share")
        period = limit.period_us
        assert period is not None  # not paced
        self.root, version = _layout()
        self.path = self.root / name
        quota = int(limit.share * period)
        try:
            self.path.mkdir(exist_ok=True)
            if version == "v1":
                (self.path / "cpu.cfs_period_us").write_text(str(period))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.path / "cpu.max").write_text(f"{quota} {period}")
        except OSError as exc:
            self.close()
            raise CofcError(f"cannot cap CPU here ({self.path}): {exc.strerror}; run as root") from None

    def add(self, pid: int) -> None:
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise CofcError(f"cannot move process {pid} into {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        """Move any process left back to the root group and remove the group."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def held_to(limit: CpuLimit | None) -> contextlib.AbstractContextManager[Path | None]:
    """The body under `limit`'s cgroup quota; nothing to hold where it is paced, or None."""
    return cpu_quota(limit) if limit is not None and not limit.paced else contextlib.nullcontext()


@contextlib.contextmanager
def cpu_quota(limit: CpuLimit) -> Iterator[Path]:
    """Run the body with this process held to `limit`."""
    group = CpuGroup(limit, f"cofc-{os.getpid()}-{int(limit.share * 1000)}")
    try:
        group.add(os.getpid())
        yield group.path
    finally:
        group.close()
