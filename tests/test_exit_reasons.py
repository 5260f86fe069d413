"""
Why a worker left, end to end: each reason (L{prefork.messages.ExitReason})
as the hooks see it in C{worker.reason}, from real servers driven by real
signals and requests.  C{child_exit} runs in the master, so that a reason
the master decides (one worker fewer, a timeout) is the one it reports,
whatever the worker said as it drained.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from server import Server, alive, descendants, waitUntil
from test_hooks import HOOKS, calls, environment, pids
from test_lifecycle import workerPids

APP = ("--app", "testapp:application")
ONE = ("--workers", "1", "--spare-workers", "0")


def childExits(log: Path, pid: int) -> list[str]:
    """
    The reasons C{child_exit} was given for worker C{pid}, once it was.
    """
    waitUntil(lambda: pid in pids(calls(log)["child_exit"], "worker"), what=f"child_exit for worker {pid}")
    return [r["reason"] for r in calls(log)["child_exit"] if r["worker"] == pid]


def quietly(function: Callable[..., object], *args: object) -> None:
    try:
        function(*args)
    except (OSError, http.client.HTTPException):
        pass


def retire(server: Server) -> int:
    pid = int(server.get("/")[2])
    server.get("/")
    return pid


def growTooBig(server: Server) -> int:
    return int(server.get("/allocate?mb=150")[1]["x-pid"])


def stop(server: Server) -> int:
    (pid,) = workerPids(server)
    server.signal(signal.SIGTERM)
    server.wait()
    return pid


def stopQuickly(server: Server) -> int:
    (pid,) = workerPids(server)
    server.signal(signal.SIGINT)
    server.wait()
    return pid


def reload(server: Server) -> int:
    (pid,) = workerPids(server)
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 1 has ended")
    return pid


def scaleDown(server: Server) -> int:
    before = workerPids(server)
    server.signal(signal.SIGTTOU)
    server.waitFor(r"Now 1 workers")
    waitUntil(lambda: len(workerPids(server)) == 1, what="one worker fewer")
    (gone,) = before - workerPids(server)
    return gone


def silence(server: Server) -> int:
    pid = int(server.get("/")[2])
    threading.Thread(target=quietly, args=(server.get, "/sleep?seconds=60"), daemon=True).start()
    server.waitFor(rf"Worker {pid} sent no heartbeat")
    return pid


def crash(server: Server) -> int:
    (pid,) = workerPids(server)
    quietly(server.get, "/crash")
    return pid


@pytest.mark.parametrize(
    "arguments, action, reason",
    [
        pytest.param(("--max-requests", "2"), retire, "limit", id="limit"),
        pytest.param(("--max-rss", "100"), growTooBig, "memory", id="memory"),
        pytest.param((), stop, "stop", id="stop"),
        pytest.param((), stopQuickly, "quick", id="quick"),
        pytest.param((), reload, "stop", id="reload"),
        pytest.param(("--workers", "2"), scaleDown, "scaled down", id="scaled-down"),
        pytest.param(("--threads", "0", "--timeout", "2"), silence, "timeout", id="timeout"),
        pytest.param((), crash, "was killed by SIGKILL", id="crash"),
    ],
)
def test_child_exit_tells_why(
    serve, tmp_path: Path, arguments: tuple[str, ...], action: Callable[[Server], int], reason: str
) -> None:
    log = tmp_path / "hooks.jsonl"
    server = serve(*APP, *HOOKS, *ONE, *arguments, env=environment(log))
    pid = action(server)
    assert childExits(log, pid) == [reason]


def test_an_orphan_tells_why_in_worker_exit(serve, tmp_path: Path) -> None:
    """
    A worker whose template is gone, and whose master has not told it to
    stop, notices that its parent changed and leaves for that reason; the
    master, which hears of workers' exits from their template, never hears
    of this one: only its own C{worker_exit} tells.
    """
    log = tmp_path / "hooks.jsonl"
    server = serve(*APP, *HOOKS, *ONE, env=environment(log))
    (pid,) = workerPids(server)
    (template,) = descendants(server.pid) - {pid}
    # Stopped, the master cannot tell the worker to stop first.
    server.signal(signal.SIGSTOP)
    try:
        os.kill(template, signal.SIGKILL)
        waitUntil(lambda: not alive(pid), what="the orphan to exit")
    finally:
        server.signal(signal.SIGCONT)
    assert [r["reason"] for r in calls(log)["worker_exit"] if r["pid"] == pid] == ["orphaned"]
