"""Cap this process's CPU with a cgroup quota, to emulate a slower device on one Linux box.

cgroup v1 (`cpu.cfs_quota_us`) or v2 (`cpu.max`), whichever is mounted; root only. The group is
removed on exit, also when the body raises or is interrupted. Where the machine refuses, the
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


@contextlib.contextmanager
def cpu_quota(share: float, pid: int | None = None, name: str | None = None) -> Iterator[Path]:
    """Run the body with process `pid` (default: this one) held to `share` of one core."""
    if not 0 < share <= 64:
        raise CofcError(f"cpu share {share} must be above 0 (1.0 is one full core)")
    root, version = _layout()
    group = root / (name or f"cofc-{os.getpid()}-{int(share * 1000)}")
    pid = pid or os.getpid()
    try:
        group.mkdir(exist_ok=True)
        quota = int(share * PERIOD_US)
        if version == "v1":
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        _remove(root, group, pid)
        raise CofcError(f"cannot cap CPU here ({group}): {exc.strerror}; run as root") from None
    try:
        yield group
    finally:
        _remove(root, group, pid)


def _remove(root: Path, group: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        (root / "cgroup.procs").write_text(str(pid))  # back to the root group
    with contextlib.suppress(OSError):
        group.rmdir()
