"""CURVE key pairs: each device's own (`keys.json`) and central's local client pair (`client.json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import zmq

from cofc.runtime._typed_json import from_json, to_json


@dataclass(frozen=True)
class KeyPair:
    public: str  # Z85, 40 characters
    secret: str

    @classmethod
    def generate(cls) -> KeyPair:
        public, secret = zmq.curve_keypair()
        return cls(public.decode(), secret.decode())

    @classmethod
    def read(cls, path: Path) -> KeyPair:
        """The pair in `path`; ValueError (a SchemaError naming the field) when it is not one."""
        return from_json(cls, json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(to_json(self)))
