"""ZeroMQ TCP endpoints, parsed in one place: the bundle's central endpoint, `--bind`, `--connect`.

`tcp://HOST:PORT`, where HOST is a name, an IPv4 address or `*` (every interface, to bind)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cofc.errors import CofcError

_FORM = re.compile(r"tcp://(?P<host>[^:/\[\]\s]+):(?P<port>[0-9]{1,5})")
_HOST = re.compile(r"[^:/\[\]\s]+")


class EndpointError(CofcError, ValueError):
    """An endpoint that is not `tcp://HOST:PORT` (a ValueError too, for typed-JSON readers)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not _HOST.fullmatch(self.host):
            raise EndpointError(f"bad endpoint host {self.host!r}: expected a name, an IPv4 address or *")
        if not 1 <= self.port <= 65535:
            raise EndpointError(f"bad endpoint port {self.port}: expected 1..65535")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        match = _FORM.fullmatch(text)
        if match is None:
            raise EndpointError(f"bad endpoint {text!r}: expected tcp://HOST:PORT, e.g. tcp://192.168.1.20:5555")
        return cls(match["host"], int(match["port"]))

    def on(self, host: str) -> Endpoint:
        """The same port on another host (a local client reaches central on 127.0.0.1)."""
        return Endpoint(host, self.port)

    def bind_any(self) -> Endpoint:
        """The same port on every interface: what central binds by default."""
        return self.on("*")

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"
