"""
Helpers for the tests that run the server under superdaemons: free ports,
JSON over TCP and UNIX sockets, and a load of new connections.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from server import APPS, TIMEOUT, Load, UnixHTTPConnection

SUPERAPP = ("--app", "superapp:application", "--workers", "2")


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago, for tools that
    cannot be told to pick one.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(address: int | str, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    """
    An HTTP connection to a port on 127.0.0.1, or to a UNIX socket path.
    """
    if isinstance(address, str):
        return UnixHTTPConnection(address, timeout=timeout)
    return http.client.HTTPConnection("127.0.0.1", address, timeout=timeout)


def getJSON(address: int | str, path: str = "/", headers: dict[str, str] | None = None) -> dict[str, Any]:
    connection = connect(address)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return json.loads(body)
    finally:
        connection.close()


def deployApp(directory: Path, version: str) -> None:
    """
    Put version C{version} of the superdaemon test application in
    C{directory}, as C{superapp.py}.
    """
    source = (APPS / "superapp.py").read_text().replace('VERSION = "1"', f"VERSION = {version!r}")
    (directory / "superapp.py").write_text(source)
    # A bytecode cache records the source's size and mtime in seconds: the
    # new version could pass for the old one.
    shutil.rmtree(directory / "__pycache__", ignore_errors=True)


class Address:
    """
    A port on 127.0.0.1 or a UNIX socket path, to aim a L{Load} at.
    """

    def __init__(self, address: int | str) -> None:
        self.address = address

    def connection(self, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
        return connect(self.address, timeout)


class NewConnectionLoad(Load):
    """
    A L{Load} whose clients send each request on a new connection, once,
    and count any error as a failure: no retry could hide a request that is
    lost, whether a switch of masters fails to hand over the connections
    waiting to be accepted or a worker that retires closes one it accepted.
    """

    def __init__(self, address: int | str, clients: int = 3) -> None:
        super().__init__(Address(address), clients=clients)  # type: ignore[arg-type]

    def _client(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            connection = self.server.connection()
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                self.answers.append((response.status, response.read()))
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(e)
            finally:
                connection.close()

    def versions(self) -> list[str]:
        return [json.loads(body)["version"] for _, body in self.answers]
