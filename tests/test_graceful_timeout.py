"""
--graceful-timeout bounds a worker's exit whatever its application does: a
worker that retires or is stopped abandons, at its deadline, what is still
running, names each request it abandons (method and path), and is gone
within the graceful timeout and a second.  Real servers, real signals.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from server import TIMEOUT, Server, alive, waitUntil
from test_lifecycle import workerPids

APP = ("--app", "testapp:application")
GRACEFUL = 2.0
#: What a loaded machine may add to the promised bound before a test sees
#: that the worker has gone.
SLACK = 2.0

#: A request that outlives any graceful timeout, by threads: in a thread
#: of the application, one that blocks it (--threads 4); in the reactor
#: (--threads 0, where an application that blocks the reactor is for the
#: heartbeat watchdog), a body far larger than what the client, which reads
#: none of it, lets through.
LONG = {"4": "/sleep?seconds=600", "0": "/big?mb=4096"}
LONG_PATH = {"4": "/sleep", "0": "/big"}


def startLongRequest(server: Server, threads: str, pid: int) -> socket.socket:
    """
    Send the long request and wait until the worker works on it.
    """
    client = socket.socket()
    # A small window, so that the worker's writes soon wait for the client.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(TIMEOUT)
    client.connect(("127.0.0.1", server.port))
    client.sendall(f"GET {LONG[threads]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    if threads == "4":
        server.waitFor(rf"sleeping in {pid}")
    else:
        assert client.recv(12) == b"HTTP/1.1 200"
    return client


def serveOne(serve, threads: str, *args: str) -> tuple[Server, int]:
    server = serve(
        *APP, "--workers", "1", "--spare-workers", "0", "--threads", threads, "--timeout", "0",
        "--graceful-timeout", str(GRACEFUL), *args,
    )
    (pid,) = workerPids(server)
    return server, pid


def goneWithin(pid: int, seconds: float) -> float:
    """
    Wait for process C{pid} to be gone; how long it took from now.
    """
    started = time.monotonic()
    waitUntil(lambda: not alive(pid), timeout=seconds + TIMEOUT, what=f"worker {pid} to exit")
    return time.monotonic() - started


def assertAbandoned(server: Server, pid: int, threads: str) -> None:
    path = LONG_PATH[threads]
    server.waitFor(rf"\[worker {pid}\] Drain timed out .*abandoning 1 requests: GET {path}$")
    if threads == "4":
        server.waitFor(rf"\[worker {pid}\] Exiting with 1 calls of the application unfinished: "
                       rf"GET {path} \(in prefork-wsgi-\d\)")


@pytest.mark.parametrize("threads", ["4", "0"])
def test_a_retiring_worker_is_gone_within_the_graceful_timeout(serve, threads: str) -> None:
    server, pid = serveOne(serve, threads, "--max-requests", "2")
    client = startLongRequest(server, threads, pid)
    try:
        # The second request reaches the limit: the worker retires.
        assert server.get("/")[0] == 200
        took = goneWithin(pid, GRACEFUL + 1)
        assertAbandoned(server, pid, threads)
        server.waitFor(rf"Worker {pid} exited after 2 requests \(limit\)")
        assert took < GRACEFUL + 1 + SLACK, took
        # Its successor serves.
        assert server.get("/")[0] == 200
    finally:
        client.close()


@pytest.mark.parametrize("threads", ["4", "0"])
def test_a_stopping_worker_is_gone_within_the_graceful_timeout(serve, threads: str) -> None:
    server, pid = serveOne(serve, threads)
    client = startLongRequest(server, threads, pid)
    try:
        server.signal(signal.SIGTERM)
        took = goneWithin(pid, GRACEFUL + 1)
        assertAbandoned(server, pid, threads)
        assert took < GRACEFUL + 1 + SLACK, took
        # It exited by itself, before the master would have killed it.
        assert server.wait() == 0
        assert "killing them" not in server.output
    finally:
        client.close()


def test_a_worker_held_by_its_reactor_is_gone_within_the_graceful_timeout(serve) -> None:
    """
    What holds a worker after its requests, here the reactor's own thread
    pool that it joins as it shuts down, holds it no longer than the
    graceful timeout either.
    """
    server, pid = serveOne(serve, "0", "--max-requests", "2")
    assert server.get("/reactor-thread?seconds=600")[0] == 200
    assert server.get("/")[0] == 200
    took = goneWithin(pid, GRACEFUL + 1)
    server.waitFor(rf"\[worker {pid}\] Still running 0.75 s after the drain's deadline: exiting")
    server.waitFor(rf"Worker {pid} exited after 2 requests \(limit\)")
    assert took < GRACEFUL + 1 + SLACK, took
