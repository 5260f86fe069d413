from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server import Server  # noqa: E402


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """
    Servers a test starts; each is stopped, and checked to leave nothing
    behind, when the test ends.
    """
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def serve(servers: list[Server]):
    """
    Start C{twistd prefork} with the given arguments and wait until it serves.
    """

    def start(*args: str, wait: bool = True, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        servers.append(server)
        server.start()
        return server.serving() if wait else server

    return start


@pytest.fixture
def noInternalErrors(servers: list[Server]) -> Iterator[None]:
    """
    Check, once the test is done, that no server it started logged an
    internal error.
    """
    yield
    for server in servers:
        server.stop()
        assert server.internalErrors() == [], server.output
