"""
The behaviour behind the performance goals: fair accept between workers, and
large bodies streamed both ways without the worker's memory growing.  Speed
itself is measured in bench/, never here.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
from pathlib import Path

import pytest

from server import TIMEOUT
from test_lifecycle import workerPids

# No spare workers: the workers are those that serve.
APP = ("--app", "testapp:application", "--max-requests", "0", "--spare-workers", "0")
MIB = 1024 * 1024
#: A worker's peak memory may grow by this much while it moves 100 MiB.
GROWTH_ALLOWED = 32 * MIB


def peakMemory(pid: int) -> int:
    """
    The most memory C{pid} has had resident, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def responsePid(client: socket.socket) -> int:
    """
    Read a whole C{Connection: close} response and return its body, a pid.
    """
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    client.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return int(body)


def test_burst_of_connections_is_shared_between_workers(serve) -> None:
    """
    A burst of connections waiting when a worker wakes up is not all taken
    by that worker: it accepts one and leaves the rest for the others.
    (Twisted's ports accept up to 100 per wake-up.)
    """
    # In the reactor thread, a request holds up its worker's accepting.
    server = serve(*APP, "--workers", "2", "--threads", "0")
    first, second = sorted(workerPids(server))
    for pid in (first, second):
        os.kill(pid, signal.SIGSTOP)
    try:
        clients = []
        for _ in range(20):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            client.sendall(b"GET /sleep?seconds=0.2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            clients.append(client)
        # Every connection is queued now; let one worker at them alone until
        # it has answered one.
        os.kill(first, signal.SIGCONT)
        answered, _, _ = select.select(clients, [], [], TIMEOUT)
        assert answered
    finally:
        for pid in (first, second):
            os.kill(pid, signal.SIGCONT)
    served = [responsePid(client) for client in clients]
    assert set(served) == {first, second}


@pytest.mark.parametrize("threads", ["0", "2"])
def test_large_response_streams_at_the_client_pace(serve, threads: str) -> None:
    """
    A 100 MiB response made one MiB at a time reaches a client that reads
    slowly without the worker holding more than a few MiB of it.
    """
    server = serve(*APP, "--workers", "1", "--threads", threads)
    (worker,) = workerPids(server)
    before = peakMemory(worker)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    connection.connect()
    # A small receive window makes the client far slower than the app.
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    connection.request("GET", "/big?mb=100")
    response = connection.getresponse()
    received = 0
    while chunk := response.read(16384):
        received += len(chunk)
    connection.close()
    assert received == 100 * MIB
    assert peakMemory(worker) - before < GROWTH_ALLOWED


@pytest.mark.parametrize("threads", ["0", "2"])
def test_large_upload_does_not_fill_memory(serve, threads: str) -> None:
    """
    A 100 MiB upload reaches the application whole, without the worker
    holding it in memory.
    """
    server = serve(*APP, "--workers", "1", "--threads", threads)
    (worker,) = workerPids(server)
    before = peakMemory(worker)
    piece = b"y" * MIB
    connection = server.connection()
    connection.request("POST", "/count", body=(piece for _ in range(100)), headers={"Content-Length": str(100 * MIB)})
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, str(100 * MIB).encode())
    connection.close()
    assert peakMemory(worker) - before < GROWTH_ALLOWED


def test_retiring_worker_answers_idle_keep_alive_connections(serve) -> None:
    """
    When a worker reaches its limit, a keep-alive connection that was idle
    at that moment still gets its next request answered (with
    C{Connection: close}) instead of being closed under the client.
    """
    server = serve("--app", "testapp:application", "--workers", "1", "--max-requests", "2", "--spare-workers", "0")
    idle = server.connection()
    idle.request("GET", "/")
    first = idle.getresponse()
    assert (first.status, first.getheader("connection")) == (200, None)
    worker = int(first.read())
    # The worker's last request, on another connection, makes it retire.
    status, headers, body = server.get("/")
    assert (status, headers["connection"], int(body)) == (200, "close", worker)
    idle.request("GET", "/")
    last = idle.getresponse()
    assert (last.status, last.getheader("connection"), int(last.read())) == (200, "close", worker)
    idle.close()
