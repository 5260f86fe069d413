"""
The health probes on the status endpoint, on the real server: C{/healthz}
while the master's loop turns, C{/readyz} before the first worker is ready,
while workers accept, when none does, across a reload and across a graceful
stop.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from server import TIMEOUT, Server, waitUntil
from statusclient import STATUS, probe, status, statusPort
from superdaemon import SUPERAPP

APP = ("--app", "testapp:application")


def waitForProbe(port: int, path: str, expected: tuple[int, str]) -> None:
    seen: list[tuple[int, str] | None] = []

    def matches() -> bool:
        seen.append(probe(port, path))
        return seen[-1] == expected

    try:
        waitUntil(matches, what=f"{path} to answer {expected}")
    except AssertionError:
        raise AssertionError(f"{path} answered {sorted(set(map(str, seen)))}, never {expected}") from None


STARTING = (503, "not ready: starting: no worker is ready yet\n")
NONE_ACCEPTS = (503, "not ready: no worker accepts connections\n")
STOPPING = (503, "not ready: stopping: finishing the requests in flight\n")
HEALTHY = (200, "ok\n")


def test_readyz_before_the_first_worker_and_when_none_accepts(servers: list[Server], tmp_path: Path) -> None:
    """
    Each worker imports the application, which waits for a gate file: with
    the gate shut, no worker becomes ready, the first time or after a
    crash.
    """
    gate = tmp_path / "gate"
    env = dict(os.environ, SUPERAPP_GATE=str(gate))
    server = Server(*SUPERAPP, *STATUS, "--no-preload", "--workers", "1", "--spare-workers", "0", env=env)
    servers.append(server)
    server.start()
    port = statusPort(server)
    waitUntil(lambda: Path(f"{gate}.importing").exists(), what="the import to begin")
    assert probe(port, "/readyz") == STARTING
    assert probe(port, "/healthz") == HEALTHY
    gate.touch()
    waitForProbe(port, "/readyz", (200, "ready: 1 worker accepting connections\n"))
    server.serving()

    # The gate shuts, and the only worker dies: its successor cannot boot.
    gate.unlink()
    Path(f"{gate}.importing").unlink()
    [worker] = status(server)["workers"]
    os.kill(worker["pid"], signal.SIGKILL)
    waitUntil(lambda: Path(f"{gate}.importing").exists(), what="the successor's import to begin")
    waitForProbe(port, "/readyz", NONE_ACCEPTS)
    assert probe(port, "/healthz") == HEALTHY
    gate.touch()
    waitForProbe(port, "/readyz", (200, "ready: 1 worker accepting connections\n"))


def test_readyz_stays_ready_across_a_reload(serve) -> None:
    """
    The old generation serves until the new one has taken over: a HUP never
    makes the server unready.
    """
    server = serve(*APP, *STATUS, "--workers", "2")
    port = statusPort(server)
    start = len(server.lines)
    server.signal(signal.SIGHUP)
    answers: list[tuple[int, str] | None] = []
    deadline = time.monotonic() + TIMEOUT
    while not any("Generation 1 has ended" in line for line in server.lines[start:]) and time.monotonic() < deadline:
        answers.append(probe(port, "/readyz"))
        time.sleep(0.02)
    server.waitFor(r"Generation 1 has ended", after=start)
    assert answers and all(a is not None and a[0] == 200 and a[1].startswith("ready: ") for a in answers), set(answers)


def test_readyz_across_a_graceful_stop(serve) -> None:
    """
    From TERM on, C{/readyz} says the server stops, for as long as the
    request in flight keeps it stopping; C{/healthz} stays healthy; the
    endpoint goes once every worker has exited.
    """
    server = serve(*APP, *STATUS, "--workers", "2", "--threads", "0")
    port = statusPort(server)
    assert probe(port, "/readyz") == (200, "ready: 2 workers accepting connections\n")
    slow: list[tuple[float, int]] = []

    def slowRequest() -> None:
        code = server.get("/sleep?seconds=4")[0]
        slow.append((time.monotonic(), code))

    request = threading.Thread(target=slowRequest)
    request.start()
    server.waitFor(r"sleeping in \d+")
    server.signal(signal.SIGTERM)
    polls: list[tuple[float, tuple[int, str] | None, tuple[int, str] | None]] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, healthy = probe(port, "/readyz"), probe(port, "/healthz")
        polls.append((time.monotonic(), ready, healthy))
        if ready is None:
            break
        time.sleep(0.05)
    request.join(TIMEOUT)
    assert server.wait() == 0
    [(answered, code)] = slow
    assert code == 200
    # Until the master has handled TERM, the server may still say ready;
    # from its first "stopping" on, it says so until the endpoint closes.
    answers = [ready for _, ready, _ in polls]
    assert STOPPING in answers, answers
    first = answers.index(STOPPING)
    assert set(answers[:first]) <= {(200, "ready: 2 workers accepting connections\n")}
    assert answers[-1] is None and set(answers[first:-1]) == {STOPPING}
    assert {healthy for _, _, healthy in polls if healthy is not None} == {HEALTHY}
    # The stop took a while: the server said it was stopping while the slow
    # request was still in flight.
    assert any(when < answered for when, ready, _ in polls if ready == STOPPING)
