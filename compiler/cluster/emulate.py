"""Make one Linux box behave like the plan's cluster (`cofc bench --emulate`).

Each device gets its own network namespace with one veth into a private bridge; both directions
of a worker's link (to central, as the plan's `link_mbps` means) are shaped with
`tc ... tbf rate <link Mb/s>`, central's own interface is not. Its process gets the CPU share its
latency table was measured under: a paced share is the process's own (`cofc run --cpu-share`,
given by the caller), an older table's cgroup quota is applied here. Addresses are 10.77.0.0/24,
used only inside the namespaces and the bridge this creates. Everything made is removed on exit,
also when interrupted. Needs root, `ip` and `tc`; where the machine refuses,
`EmulationUnavailable` says why and the caller runs unshaped.

The devices share this machine's cores, which real devices do not, and all of them start
computing when a request arrives. So that the sharing costs as little as it can, a device with a
smaller share runs at a lower priority (`nice`, NICE_STEP per rank): a paced device whose compute
is delayed loses nothing while its CPU time / share is still ahead (its pacing sleeps less), so
the slack lies with the small shares, and the largest share, which has the least, goes first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from cofc.errors import CofcError
from cofc.runtime.cgroup import CpuGroup, CpuLimit

SUBNET = "10.77.0"
NICE_STEP = 5


class EmulationUnavailable(CofcError):
    pass


@dataclass(frozen=True)
class EmulatedDevice:
    name: str
    cpu: CpuLimit
    link_mbps: float | None  # its link to central, both directions; None for central itself


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise EmulationUnavailable(f"'ip {' '.join(args)}' failed: {result.stderr.strip()}")


def _tc(*args: str) -> None:
    result = subprocess.run(["tc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise EmulationUnavailable(f"'tc {' '.join(args)}' failed: {result.stderr.strip()}")


class Emulation:
    def __init__(self, devices: Sequence[EmulatedDevice]):
        if os.geteuid() != 0:
            raise EmulationUnavailable("network namespaces and cgroups need root")
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise EmulationUnavailable(f"'{tool}' is not installed (Debian: iproute2)")
        self.devices = list(devices)
        tag = os.getpid() % 10000
        self.bridge = f"cofcbr{tag}"
        self.ns = {d.name: f"cofc-{tag}-{i}" for i, d in enumerate(self.devices)}
        self.veth = {d.name: f"cofc{tag}v{i}" for i, d in enumerate(self.devices)}
        self.addr = {d.name: f"{SUBNET}.{10 + i}" for i, d in enumerate(self.devices)}
        ranked = sorted({d.cpu.share for d in self.devices}, reverse=True)
        self.nice = {d.name: NICE_STEP * ranked.index(d.cpu.share) for d in self.devices}
        self.groups: dict[str, CpuGroup] = {}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Emulation:
        self._old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for d in self.devices:
                ns, veth = self.ns[d.name], self.veth[d.name]
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "addr", "add", f"{self.addr[d.name]}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                if d.link_mbps is not None:  # towards the device, and from it
                    rate = f"{d.link_mbps}mbit"
                    _tc("qdisc", "add", "dev", veth, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
                    _tc(
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        "eth0",
                        "root",
                        "tbf",
                        "rate",
                        rate,
                        "burst",
                        "32kbit",
                        "latency",
                        "400ms",
                    )
                if not d.cpu.paced:
                    self.groups[d.name] = CpuGroup(d.cpu, f"{self.ns[d.name]}")
        except BaseException:
            self.close()
            raise
        return self

    def spawn(
        self, device: str, argv: Sequence[str], stdout: int | None = None, stderr: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside the device's namespace, at its priority, in its cgroup where it has one."""
        proc = subprocess.Popen(
            ["nice", "-n", str(self.nice[device]), "ip", "netns", "exec", self.ns[device], *argv],
            stdout=stdout,
            stderr=stderr,
        )
        self.procs.append(proc)
        if device in self.groups:
            self.groups[device].add(proc.pid)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)
        for group in self.groups.values():
            group.close()
        for d in self.devices:
            subprocess.run(["ip", "netns", "del", self.ns[d.name]], capture_output=True)
            subprocess.run(["ip", "link", "del", self.veth[d.name]], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.close()
        signal.signal(signal.SIGTERM, self._old_term)
