"""ZeroMQ socket set-up shared by workers and clients (the central side is in central.py)."""

from __future__ import annotations

import zmq

from cofc.runtime.keys import KeyPair


def client_socket(
    ctx: zmq.Context[zmq.Socket[bytes]], kind: int, server_key: str | None, keys: KeyPair | None
) -> zmq.Socket[bytes]:
    """A socket that talks CURVE to central (whose public key is `server_key`) with `keys`, or
    plain TCP when `server_key` is None (--insecure)."""
    if server_key is not None and keys is None:
        raise ValueError("a CURVE server key needs this side's key pair too (or neither, for --insecure)")
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    sock.linger = 0
    if server_key is not None and keys is not None:
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey = keys.public.encode()
        sock.curve_secretkey = keys.secret.encode()
    return sock
