"""
Helpers for the tests that run the server under superdaemons: free ports,
JSON over TCP and UNIX sockets, and a bounded load that counts failures.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from server import APPS, TIMEOUT, UnixHTTPConnection

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


class Load:
    """
    Threads that send requests, each on a new connection, until stopped, at
    most C{limit} each and never past C{TIMEOUT}; every failure is kept.
    """

    def __init__(self, address: int | str, threads: int = 3, limit: int = 5000) -> None:
        self.address = address
        self.limit = limit
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)

    def _run(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                version = getJSON(self.address)["version"]
            except Exception as e:
                with self._lock:
                    self.failures.append(repr(e))
            else:
                with self._lock:
                    self.versions.append(version)

    def sent(self) -> int:
        with self._lock:
            return len(self.versions) + len(self.failures)
