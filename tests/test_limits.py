"""
Per-worker request limits and the exit guard.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

from server import Server, alive, waitUntil

APP = ("--app", "testapp:application")


def sequentialPids(server: Server, count: int) -> tuple[list[int], list[bool]]:
    """
    Send C{count} requests one after another over keep-alive connections,
    reconnecting when the server closes one.  Return the worker pid of each
    response and whether it announced C{Connection: close}.
    """
    pids, closes = [], []
    connection = server.connection()
    for _ in range(count):
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        pids.append(int(response.read()))
        closes.append(response.getheader("connection") == "close")
        if closes[-1]:
            connection.close()
    connection.close()
    return pids, closes


def retiredCounts(server: Server, pids: list[int]) -> dict[int, int]:
    """
    How many requests each worker that has retired served.
    """
    counts = Counter(pids)
    return {pid: n for pid, n in counts.items() if not alive(pid)}


def test_each_worker_serves_exactly_its_limit(serve) -> None:
    server = serve(*APP, "--workers", "2", "--max-requests", "5")
    pids, closes = sequentialPids(server, 200)
    assert server.process.poll() is None
    assert server.pid not in pids
    counts = Counter(pids)
    assert len(counts) >= 40
    for pid, n in counts.items():
        waitUntil(lambda n=n, pid=pid: n < 5 or not alive(pid), what=f"worker {pid} to exit")
        assert n <= 5
    retired = retiredCounts(server, pids)
    assert len(retired) >= 38
    assert set(retired.values()) == {5}
    # The response that reaches a worker's limit, and only that one, closes
    # its connection.
    for pid in retired:
        indexes = [i for i, p in enumerate(pids) if p == pid]
        assert [closes[i] for i in indexes] == [False] * 4 + [True]
    # The master saw each of them retire at its limit.
    for pid in list(retired)[:5]:
        server.waitFor(rf"Worker {pid} exited after 5 requests \(limit\)")


def test_limits_drawn_between_min_and_max(serve) -> None:
    server = serve(*APP, "--workers", "2", "--min-requests", "3", "--max-requests", "8")
    pids, _ = sequentialPids(server, 200)
    retired = retiredCounts(server, pids)
    assert len(retired) >= 20
    assert all(3 <= n <= 8 for n in retired.values()), retired
    assert len(set(retired.values())) > 1


def release(fifo: Path) -> None:
    """
    Let the guarded work that waits on C{fifo} finish: open it for writing,
    once the work has opened it for reading.
    """

    def opened() -> bool:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            if e.errno != errno.ENXIO:  # no reader yet
                raise
            return False
        return True

    waitUntil(opened, what="the guarded work to wait for its release")


def test_exit_guard_keeps_worker_until_work_is_done(serve, tmp_path: Path) -> None:
    server = serve(*APP, "--workers", "2", "--max-requests", "1")
    marker, fifo = tmp_path / "marker", tmp_path / "release"
    os.mkfifo(fifo)
    status, headers, _ = server.get(f"/guard?release={fifo}&marker={marker}")
    assert status == 200
    guarded = int(headers["x-pid"])
    # The response is out, the worker has reached its limit, and the work
    # goes on until released: the worker waits for it, and takes no request.
    others = set()
    for _ in range(10):
        status, headers, _ = server.get("/")
        assert status == 200
        others.add(int(headers["x-pid"]))
    assert guarded not in others and others
    assert alive(guarded) and not marker.exists()
    release(fifo)
    waitUntil(lambda: not alive(guarded), what="the guarded worker to exit")
    assert marker.read_text() == str(guarded)
    server.waitFor(rf"Worker {guarded} exited after 1 requests")


def test_threaded_exit_guard(serve, tmp_path: Path) -> None:
    server = serve(*APP, "--workers", "1", "--max-requests", "1", "--threads", "2")
    marker = tmp_path / "marker"
    _, headers, _ = server.get(f"/guard?seconds=1&marker={marker}")
    guarded = int(headers["x-pid"])
    waitUntil(lambda: not alive(guarded), what="the guarded worker to exit")
    assert marker.read_text() == str(guarded)


def test_exit_guard_is_bounded_by_the_graceful_timeout(serve, tmp_path: Path) -> None:
    server = serve(*APP, "--workers", "1", "--max-requests", "1", "--graceful-timeout", "1")
    _, headers, _ = server.get(f"/guard?seconds=60&marker={tmp_path / 'never'}")
    guarded = int(headers["x-pid"])
    server.waitFor(rf"\[worker {guarded}\] Drain timed out with 0 connections open and 1 exit guards pending")
    waitUntil(lambda: not alive(guarded), what="the guarded worker to exit")
    assert server.get("/")[0] == 200
