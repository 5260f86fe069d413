"""
Every change of the worker set is lossless: recycling, reload, stop,
scaling, crashes.  Real processes, real signals, under load where it matters.

Lossless means: for clients that retry an idempotent request when a
keep-alive connection they reuse is reset (L{server.fetch}), and for clients
that open a new connection per request and retry nothing
(L{superdaemon.NewConnectionLoad}).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

from server import TIMEOUT, Load, Server, alive, descendants, parentPid, waitUntil
from statusclient import STATUS, status
from superdaemon import NewConnectionLoad

APP = ("--app", "testapp:application")

VERSIONED = """
import os
from pathlib import Path

VERSION = (Path(__file__).parent / "version.txt").read_text().strip()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{VERSION} {os.getpid()}".encode()]
"""


def versionedApp(folder: Path, version: str) -> tuple[str, ...]:
    (folder / "versioned.py").write_text(VERSIONED)
    (folder / "version.txt").write_text(version)
    return ("--app", "versioned:application", "--pythonpath", str(folder))


def _parentOrNone(pid: int) -> int | None:
    """
    The parent of C{pid}, or L{None} once it has exited.
    """
    try:
        return parentPid(pid)
    except FileNotFoundError:
        return None


def workerPids(server: Server) -> set[int]:
    """
    The worker processes: the children of the master's template processes.
    """
    templates = {pid for pid in descendants(server.pid) if _parentOrNone(pid) == server.pid}
    return {pid for template in templates for pid in descendants(template)}


def test_recycling_under_load(serve) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", "--max-requests", "100")
    accepting: list[int] = []
    with Load(server, clients=4, limit=750) as load:
        # The master's view, sampled all along: workers idle or busy accept.
        while load.running:
            states = status(server)["workers_by_state"]
            accepting.append(states["idle"] + states["busy"])
        load.finish()
    assert len(accepting) > 10 and min(accepting) >= 1, accepting
    assert not load.failures, load.failures[:3]
    assert len(load.answers) == 3000
    assert all(status == 200 for status, _ in load.answers)
    assert len({body for _, body in load.answers}) >= 25
    assert server.process.poll() is None


def test_reload_under_load(serve, tmp_path: Path) -> None:
    server = serve(*versionedApp(tmp_path, "v1"), "--workers", "2", "--graceful-timeout", "10")
    with Load(server, clients=3) as load:
        load.waitForAnswers(50)
        oldPids = {int(body.split()[1]) for _, body in load.answers}
        (tmp_path / "version.txt").write_text("v2")
        server.signal(signal.SIGHUP)
        server.waitFor(r"Generation 2 serving")
        waitUntil(lambda: any(body.startswith(b"v2") for _, body in load.answers[-20:]), what="new code")
        count = len(load.answers)
        load.waitForAnswers(count + 100)
    assert not load.failures, load.failures[:3]
    assert all(body.startswith(b"v2") for _, body in load.answers[-50:])
    waitUntil(lambda: not any(alive(pid) for pid in oldPids), timeout=20, what="old workers to exit")
    server.waitFor(r"Generation 1 has ended")
    assert server.process.poll() is None


def test_fresh_connections_lose_nothing(serve, tmp_path: Path) -> None:
    """
    Lossless with no retry at all: clients that send each request on a new
    connection and count every error lose none, while workers retire at
    their limit and while a reload replaces every worker.
    """
    server = serve(*versionedApp(tmp_path, "v1"), "--workers", "2", "--max-requests", "20")
    with NewConnectionLoad(server.port) as load:
        server.waitFor(r"Worker \d+ exited after 20 requests \(limit\)")
        (tmp_path / "version.txt").write_text("v2")
        server.signal(signal.SIGHUP)
        server.waitFor(r"Generation 2 serving")
        server.waitFor(r"Generation 1 has ended")
        load.waitForAnswers(len(load.answers) + 50)
    assert load.failures == []
    assert all(status == 200 for status, _ in load.answers)
    versions = [body.split()[0] for _, body in load.answers]
    assert versions[0] == b"v1" and versions[-1] == b"v2"
    # Recycled: many workers answered, of both generations.
    assert len({body.split()[1] for _, body in load.answers}) >= 6


def test_reload_with_broken_code_keeps_serving(serve, tmp_path: Path) -> None:
    server = serve(*versionedApp(tmp_path, "v1"), "--workers", "2")
    (tmp_path / "versioned.py").write_text("raise RuntimeError('broken deploy')\n")
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 2 failed, generation 1 keeps serving: .*RuntimeError: broken deploy")
    server.waitFor("Traceback")
    for _ in range(10):
        assert server.get("/")[2].startswith(b"v1")
    (tmp_path / "versioned.py").write_text(VERSIONED)
    (tmp_path / "version.txt").write_text("v3")
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 3 serving")
    waitUntil(lambda: server.get("/")[2].startswith(b"v3"), what="the fixed code")


def test_term_finishes_requests_in_flight(servers) -> None:
    server = Server(*APP, "--workers", "2", "--threads", "5", "--spare-workers", "0")
    servers.append(server)
    server.start().serving()
    results: list[object] = []

    def slow() -> None:
        try:
            results.append(server.get("/sleep?seconds=2")[0])
        except Exception as e:
            results.append(e)

    threads = [threading.Thread(target=slow) for _ in range(10)]
    for thread in threads:
        thread.start()
    waitUntil(lambda: server.output.count("sleeping in") == 10, what="10 requests in flight")
    server.signal(signal.SIGTERM)
    refused = False
    while not refused:
        time.sleep(0.05)  # a client arriving now and then, not a SYN flood
        probe = socket.socket()
        probe.settimeout(TIMEOUT)
        try:
            probe.connect(("127.0.0.1", server.port))
        except ConnectionRefusedError:
            refused = True
        else:
            # Accepted before the stop took hold: then it must be answered.
            probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # Buffered: read() returns the 12 bytes however they arrive.
            assert probe.makefile("rb").read(12) == b"HTTP/1.1 200"
        finally:
            probe.close()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == [200] * 10
    assert server.wait(timeout=15) == 0


def test_second_term_stops_quickly(serve) -> None:
    server = serve(*APP, "--workers", "1", "--threads", "2", "--graceful-timeout", "120")
    thread = threading.Thread(target=_ignoreErrors, args=(server.get, "/sleep?seconds=60"), daemon=True)
    thread.start()
    server.waitFor("sleeping in")
    server.signal(signal.SIGTERM)
    server.waitFor("Stopping gracefully")
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0


def test_ctrl_c_stops_everything_cleanly(serve) -> None:
    server = serve(*APP, "--workers", "2")
    os.killpg(server.pid, signal.SIGINT)
    server.wait()
    server.waitFor("<EOF>")
    assert "Traceback" not in server.output


def test_killed_worker_is_replaced(serve) -> None:
    server = serve(*APP, "--workers", "2", "--max-requests", "0")
    with Load(server, clients=2) as load:
        load.waitForAnswers(100)
        victim = int(load.answers[-1][1])
        os.kill(victim, signal.SIGKILL)
        server.waitFor(rf"Worker {victim} was killed by SIGKILL after \d+ requests")
        count = len(load.answers)
        load.waitForAnswers(count + 300)
    # Only requests the killed worker had in flight may fail.
    assert len(load.failures) <= 2
    assert victim not in {int(body) for _, body in load.answers[count:]}
    # Two workers and the spare again.
    waitUntil(lambda: len(workerPids(server) - {victim}) == 3, what="the replacement")


def test_ttin_and_ttou_change_the_worker_count(serve) -> None:
    server = serve(*APP, "--workers", "2", "--spare-workers", "0")
    waitUntil(lambda: len(workerPids(server)) == 2, what="2 workers")
    server.signal(signal.SIGTTIN)
    waitUntil(lambda: len(workerPids(server)) == 3, what="3 workers")
    server.recordProcesses()
    # Signals of one kind sent at once may arrive as one: send them in turn.
    server.signal(signal.SIGTTOU)
    server.waitFor("Now 2 workers")
    server.signal(signal.SIGTTOU)
    server.waitFor("Now 1 workers")
    server.signal(signal.SIGTTOU)
    server.waitFor("Keeping the last worker")
    waitUntil(lambda: len(workerPids(server)) == 1, what="1 worker")
    assert server.get("/")[0] == 200


def startedAt(pid: int) -> float:
    """
    When process C{pid} started, in seconds on C{CLOCK_BOOTTIME}.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def crash(server: Server) -> tuple[int, float]:
    """
    Have the one worker kill itself; return its pid and when it did.
    """
    mark = len(server.lines)
    try:
        server.get("/crash")
    except (OSError, http.client.HTTPException):
        pass
    match = server.waitFor(r"crashing (\d+) at ([\d.]+)", after=mark)
    pid = int(match.group(1))
    server.waitFor(rf"Worker {pid} was killed by SIGKILL after \d+ requests", after=mark)
    return pid, float(match.group(2))


def test_crash_loop_backs_off(serve) -> None:
    """
    A worker that keeps crashing is replaced after longer and longer waits,
    and no sooner: the master never spins forking workers that die.
    """
    server = serve(*APP, "--workers", "1", "--spare-workers", "0")
    mark = len(server.lines)
    for _ in range(4):
        server.recordProcesses()
        _, crashedAt = crash(server)
    # Each request waits in the listening socket's queue for the next worker.
    replacement = int(server.get("/")[2])
    logged = "\n".join(server.lines[mark:])
    waits = [float(m) for m in re.findall(r"Waiting ([\d.]+) s before replacing a crashed worker", logged)]
    # The first crash is replaced at once, then 0.5 s doubling.
    assert waits == [0.5, 1.0, 2.0], waits
    assert startedAt(replacement) - crashedAt >= 2.0 - 0.01  # one clock tick
    assert server.process.poll() is None


def test_stuck_worker_is_killed_after_timeout(serve) -> None:
    # In the reactor thread, a sleeping request stops the event loop.
    server = serve(*APP, "--workers", "1", "--timeout", "2", "--threads", "0")
    stuck = threading.Thread(target=lambda: _ignoreErrors(server.get, "/sleep?seconds=60"), daemon=True)
    stuck.start()
    pid = int(server.waitFor(r"sleeping in (\d+)").group(1))
    server.waitFor(rf"Worker {pid} sent no heartbeat for \d+ s: aborting it")
    server.waitFor(rf"Worker {pid} was killed by SIG(ABRT|KILL) after \d+ requests \(timeout\)")
    # faulthandler showed where it was stuck (its lines come through the
    # output pipe, which the master reads apart from the status pipe).
    server.waitFor(r"testapp\.py")
    assert server.get("/")[0] == 200


def test_template_death_is_recovered(serve) -> None:
    server = serve(*APP, "--workers", "2")
    # Not by its command line: with setproctitle that is its title.
    template = next(pid for pid in descendants(server.pid) if pid not in workerPids(server))
    os.kill(template, signal.SIGKILL)
    server.waitFor(r"The template of generation 1 exited unexpectedly")
    server.waitFor(r"Generation 2 serving")
    server.recordProcesses()
    assert server.get("/")[0] == 200
    server.waitFor(r"Generation 1 has ended")


def _ignoreErrors(function, *args) -> None:
    try:
        function(*args)
    except Exception:
        pass


def test_a_request_in_flight_outlives_the_masters_death(serve) -> None:
    """
    A worker whose master is killed finishes the request it is running
    before it leaves, although nothing reads what it logs any more: a
    write to that pipe fails, and does not kill it.
    """
    server = serve(*APP, "--workers", "1", "--threads", "2", "--graceful-timeout", "30")
    answers: list[tuple[int, bytes]] = []

    def ask() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        connection.request("GET", "/sleep?seconds=3")
        response = connection.getresponse()
        answers.append((response.status, response.read()))

    asking = threading.Thread(target=ask)
    asking.start()
    worker = int(server.waitFor(r"sleeping in (\d+)").group(1))
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    asking.join(TIMEOUT)
    assert answers and answers[0][0] == 200, answers
    waitUntil(lambda: not alive(worker), what="the orphan to exit")


def test_workers_exit_when_the_master_dies(serve) -> None:
    server = serve(*APP, "--workers", "2")
    children = descendants(server.pid)
    assert len(children) == 4  # the template, two workers, a spare
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    waitUntil(lambda: not any(alive(pid) for pid in children), what="the orphans to exit")
