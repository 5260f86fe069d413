"""
einhorn's contract, played by the test as einhorn itself is a Ruby gem: the
server serves the descriptors einhorn names, and USR2 stops it gracefully.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from server import Server, waitUntil
from superdaemon import SUPERAPP, getJSON


def launch(servers: list[Server], listening: socket.socket, legacy: bool) -> Server:
    """
    Start the server as einhorn would: the socket bound, its descriptor
    inherited and named in the environment.
    """
    fd = listening.fileno()
    variables = {"EINHORN_FDS": str(fd)} if legacy else {"EINHORN_FD_COUNT": "1", "EINHORN_FD_0": str(fd)}
    server = Server(*SUPERAPP, listen=None, env=dict(os.environ, **variables), passFds=(fd,))
    servers.append(server)
    return server.start().serving()


@pytest.fixture
def listening():
    skt = socket.socket()
    skt.bind(("127.0.0.1", 0))
    skt.listen(128)
    yield skt
    skt.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["EINHORN_FD_COUNT", "EINHORN_FDS"])
def test_serves_einhorn_socket(servers: list[Server], listening: socket.socket, legacy: bool) -> None:
    server = launch(servers, listening, legacy)
    port = listening.getsockname()[1]
    server.waitFor(rf"Listening on http://127\.0\.0\.1:{port}/ \(from einhorn fd {listening.fileno()}\)")
    answer = getJSON(port)
    assert answer["leaked"] == {}
    assert server.stop() == 0


def test_usr2_drains(servers: list[Server], listening: socket.socket, tmp_path: Path) -> None:
    server = launch(servers, listening, legacy=False)
    port, marker = listening.getsockname()[1], tmp_path / "started"
    answers: list[dict] = []
    slow = threading.Thread(target=lambda: answers.append(getJSON(port, f"/slow?{marker},1.5")))
    slow.start()
    waitUntil(marker.exists, what="the slow request to start")
    server.signal(signal.SIGUSR2)
    server.waitFor("Stopping gracefully")
    slow.join()
    assert answers and answers[0]["version"] == "1"
    assert server.wait() == 0
    # The socket is einhorn's: the server closed its copies but never shut
    # it down, so it still takes connections for the next server.
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    listening.settimeout(10)
    listening.accept()[0].close()
    client.close()


def test_order_of_protocols(servers: list[Server], listening: socket.socket) -> None:
    """
    Server::Starter's sockets come before einhorn's, and --listen before
    either.
    """
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    try:
        port = listening.getsockname()[1]
        env = dict(
            os.environ,
            SERVER_STARTER_PORT=f"127.0.0.1:{port}={listening.fileno()}",
            EINHORN_FD_COUNT="1",
            EINHORN_FD_0=str(other.fileno()),
        )
        fds = (listening.fileno(), other.fileno())
        starter = Server(*SUPERAPP, listen=None, env=env, passFds=fds)
        explicit = Server(*SUPERAPP, env=env, passFds=fds)
        servers += [starter, explicit]
        starter.start().serving()
        explicit.start().serving()
        assert starter.port == port and "from einhorn" not in starter.output
        assert explicit.port not in (port, other.getsockname()[1]) and "(from " not in explicit.output
        assert getJSON(port)["leaked"] == {}
    finally:
        other.close()
