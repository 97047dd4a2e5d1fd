"""Endpoints are parsed in one place: good ones round-trip, bad ones are a clear one-line error."""

from __future__ import annotations

import pytest

from cofc.errors import CofcError
from cofc.runtime.endpoint import Endpoint
from tests.helpers import run_cofc


@pytest.mark.parametrize(
    "text,host,port",
    [
        ("tcp://127.0.0.1:5555", "127.0.0.1", 5555),
        ("tcp://orin-nano.local:1", "orin-nano.local", 1),
        ("tcp://*:65535", "*", 65535),
    ],
)
def test_parses_and_prints_back(text, host, port):
    endpoint = Endpoint.parse(text)
    assert (endpoint.host, endpoint.port) == (host, port) and str(endpoint) == text


def test_same_port_elsewhere():
    endpoint = Endpoint.parse("tcp://192.168.1.20:5555")
    assert str(endpoint.bind_any()) == "tcp://*:5555"
    assert endpoint.on("127.0.0.1") == Endpoint("127.0.0.1", 5555)


@pytest.mark.parametrize(
    "text",
    [
        "192.168.1.20:5555",
        "tcp://host",
        "tcp://host:",
        "tcp://:5555",
        "udp://h:5555",
        "tcp://h:0",
        "tcp://h:65536",
        "tcp://h:55a",
        "tcp://h:5555/x",
        "tcp://[::1]:5555",
        "tcp://a:b:5555",
        " tcp://h:5555",
    ],
)
def test_bad_endpoints_are_refused(text):
    with pytest.raises(CofcError, match="bad endpoint"):
        Endpoint.parse(text)


def test_bad_host_is_refused_when_built_directly():
    with pytest.raises(CofcError, match="bad endpoint host"):
        Endpoint("my host", 5555)


def test_cli_names_the_bad_option(built):
    result = run_cofc("run", "--bundle", str(built / "bundle" / "tx2"), "--connect", "orin:5555")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--connect" in result.stderr and "expected tcp://HOST:PORT" in result.stderr
