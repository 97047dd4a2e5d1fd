"""Cap CPU with a cgroup quota, to emulate a slower device on one Linux box.

cgroup v1 (`cpu.cfs_quota_us`) or v2 (`cpu.max`), whichever is mounted; root only. Groups are
removed when closed, also when the body raises or is interrupted. Where the machine refuses, the
error says why; callers decide whether to run unshaped.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from cofc.errors import CofcError

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _layout() -> tuple[Path, str]:
    if (V1 / "cpu.cfs_quota_us").exists():
        return V1, "v1"
    if (V2 / "cgroup.controllers").exists() and "cpu" in (V2 / "cgroup.controllers").read_text().split():
        return V2, "v2"
    raise CofcError("cannot cap CPU here: no cgroup cpu controller is mounted (v1 cpu or v2 cpu.max)")


class CpuGroup:
    """A cgroup holding its processes to `share` of one core (1.0 = a full core)."""

    def __init__(self, share: float, name: str):
        if not 0 < share <= 64:
            raise CofcError(f"cpu share {share} must be above 0 (1.0 is one full core)")
        self.root, version = _layout()
        self.path = self.root / name
        quota = int(share * PERIOD_US)
        try:
            self.path.mkdir(exist_ok=True)
            if version == "v1":
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
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


@contextlib.contextmanager
def cpu_quota(share: float) -> Iterator[Path]:
    """Run the body with this process held to `share` of one core."""
    group = CpuGroup(share, f"cofc-{os.getpid()}-{int(share * 1000)}")
    try:
        group.add(os.getpid())
        yield group.path
    finally:
        group.close()
