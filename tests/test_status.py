"""
The status page: its JSON, its Prometheus metrics, and its HTML in a real
headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawhttp import exchange
from server import TIMEOUT, Server, UnixHTTPConnection, waitUntil
from statusclient import STATUS, fetch, metrics, status, statusPort
from test_corpus import CORPUS, Case
from tools import program, requires

APP = ("--app", "testapp:application")
#: Where the screenshot README.rst shows is kept.
SCREENSHOT = Path(__file__).parent.parent / "docs" / "status-page.png"


def sequential(server: Server, count: int, path: str = "/") -> None:
    for _ in range(count):
        code, _, _ = server.get(path)
        assert code == 200


@pytest.fixture
def slowRequest() -> Iterator[callable]:
    """
    Send a slow request in the background; wait for its answer at the end.
    """
    threads: list[threading.Thread] = []
    answers: list[int] = []

    def send(server: Server, seconds: float) -> None:
        thread = threading.Thread(target=lambda: answers.append(server.get(f"/sleep?seconds={seconds}")[0]))
        thread.start()
        threads.append(thread)

    yield send
    for thread in threads:
        thread.join(TIMEOUT)
    assert answers == [200] * len(threads)


def busyWith(server: Server, path: str) -> dict:
    found: list[dict] = []

    def check() -> bool:
        found[:] = [status(server)]
        return any(w["state"] == "busy" and w["last_path"] == path for w in found[0]["workers"])

    waitUntil(check, what=f"a worker busy with {path}")
    return found[0]


def test_status_json_shows_busy_worker_and_restarts(serve, slowRequest) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", "--max-requests", "5", "--threads", "0")
    slowRequest(server, 3)
    # The application runs in the reactor thread and blocks it: the worker
    # must have reported busy before calling it.
    busyWith(server, "/sleep")
    # Two workers accept, and one spare waits to replace the first to retire.
    expected = {"booting": 0, "spare": 1, "idle": 1, "busy": 1, "draining": 0}
    waitUntil(lambda: status(server)["workers_by_state"] == expected, what=f"workers {expected}")
    snapshot = status(server)
    workers = snapshot["workers"]
    busy = [w for w in workers if w["state"] == "busy"]
    assert len(busy) == 1 and busy[0]["in_flight"] == 1 and busy[0]["last_path"] == "/sleep"
    assert sorted(w["state"] for w in workers if w is not busy[0]) == ["idle", "spare"]
    assert snapshot["generation"] == 1 and snapshot["workers_wanted"] == 2
    assert snapshot["restarts"] == {"limit": 0, "reload": 0, "crash": 0, "timeout": 0, "memory": 0}
    for worker in workers:
        assert worker["generation"] == 1 and worker["limit"] == 5
        assert worker["rss_bytes"] > 1 << 20
        assert worker["age_seconds"] > 0
    # Past its limit of 5 the idle worker retires; its successor takes over.
    sequential(server, 12)
    waitUntil(lambda: status(server)["restarts"]["limit"] >= 2, what="two workers retired at their limit")
    snapshot = status(server)
    assert snapshot["restarts"]["crash"] == snapshot["restarts"]["memory"] == 0
    assert {w["pid"] for w in snapshot["workers"]} != {w["pid"] for w in workers}


def test_metrics_count_requests(serve) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", "--max-requests", "7")
    sequential(server, 40, "/hello?x=1")
    # Workers report within a second; retired ones are counted by the master.
    waitUntil(lambda: metrics(server)["prefork_requests_total"][()] == 40, what="40 requests counted")
    samples = metrics(server)
    assert samples["prefork_restarts_total"][(("reason", "limit"),)] >= 4
    reasons = {dict(k)["reason"] for k in samples["prefork_restarts_total"]}
    assert reasons == {"limit", "reload", "crash", "timeout", "memory"}
    assert samples["prefork_generation"][()] == 1
    live = {dict(labels)["worker"] for labels in samples["prefork_worker_requests_total"]}
    assert len(live) >= 2
    for labels, value in samples["prefork_worker_state"].items():
        assert dict(labels)["state"] in ("booting", "spare", "idle", "busy", "draining") and value in (0, 1)
    assert sum(samples["prefork_workers"].values()) == len(live)
    for name in ("prefork_worker_resident_memory_bytes", "prefork_worker_in_flight", "prefork_worker_age_seconds"):
        assert {dict(labels)["worker"] for labels in samples[name]} == live
    assert samples["prefork_requests_per_second"][()] > 0


def refuse(server: Server, name: str, expected: int) -> None:
    """
    Send the request of tests/http/C{name}.http, which the server refuses
    itself with C{expected}.
    """
    responses, reader = exchange(server.port, Case.load(CORPUS / f"{name}.http").request)
    reader.sock.close()
    assert [r.status for r in responses] == [expected]


def test_refusals_counted_by_status_past_their_workers(serve) -> None:
    """
    The requests the server refuses itself, before any application sees
    them, are counted by status in the JSON, the metrics and the page,
    from the heartbeats of the worker that refused them, and still once
    that worker has retired.
    """
    server = serve(
        *APP, *STATUS, "--workers", "1", "--max-requests", "4",
        "--limit-request-line", "1024", "--limit-request-field-size", "512",
    )
    refusers = {w["pid"] for w in status(server)["workers"]}
    for name, code, times in [("line-bad-method", 400, 2), ("line-too-long", 414, 1), ("field-too-long", 431, 3)]:
        for _ in range(times):
            refuse(server, name, code)
    expected = {"400": 2, "408": 0, "413": 0, "414": 1, "431": 3, "501": 0}
    waitUntil(lambda: status(server)["refused_by_status"] == expected, what=f"refusals {expected} reported")

    def retired() -> bool:
        assert server.get("/")[0] == 200
        return not refusers & {w["pid"] for w in status(server)["workers"]}

    waitUntil(retired, what=f"workers {refusers} retired")
    assert status(server)["refused_by_status"] == expected
    samples = metrics(server)["prefork_refused_requests_total"]
    assert {dict(labels)["status"]: value for labels, value in samples.items()} == expected
    page = fetch(server, "/")[2].decode()
    assert "<em>2</em> 400 · <em>0</em> 408 · <em>0</em> 413 · <em>1</em> 414 · <em>3</em> 431" in page


def test_status_endpoint_errors(serve) -> None:
    server = serve(*APP, *STATUS, "--workers", "1")
    assert fetch(server, "/nothing")[0] == 404
    assert fetch(server, "/status.json/more")[0] == 404


def test_status_off_by_default(serve) -> None:
    server = serve(*APP, "--workers", "1")
    assert "Status page" not in server.output


def chromium(*args: str, timeout: float = TIMEOUT, profile: Path) -> str:
    """
    Run headless Chromium with a fresh profile; stop it by its pid if it
    hangs.
    """
    command = [
        program("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out.decode("utf-8", "replace")


def buildHistory(server: Server, bursts: list[int]) -> None:
    """
    Send each burst of requests at the start of a step of the request
    rate's history, and wait for the step to end.
    """
    for count in bursts:
        points = len(status(server)["requests_per_second_history"])
        sequential(server, count, "/hello/world?q=1")
        waitUntil(
            lambda points=points: len(status(server)["requests_per_second_history"]) > points,
            what="the next point of history",
        )


@requires("chromium")
def test_page_renders_in_chromium(serve, slowRequest, tmp_path: Path) -> None:
    # In the reactor thread, so that the busy worker takes no other request.
    server = serve(*APP, *STATUS, "--workers", "3", "--max-requests", "9", "--threads", "0")
    bursts = [20, 45, 30, 60, 40, 25]
    buildHistory(server, bursts)
    # A new generation, so that every worker is fresh and the slow request
    # is no worker's last (that worker would show draining).  Then enough
    # requests to retire a worker.
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 1 has ended")
    slowRequest(server, 10)
    busyWith(server, "/sleep")
    sequential(server, 20, "/hello/world?q=1")
    waitUntil(lambda: status(server)["restarts"]["limit"] >= 1, what="a worker retired")
    # Until the slow request ends, no worker comes or goes.  One spare, and
    # one more while a worker is close to its limit (its successor).
    settled = {"booting": 0, "idle": 2, "busy": 1, "draining": 0}

    def isSettled() -> bool:
        states = status(server)["workers_by_state"]
        return states.pop("spare") in (1, 2) and states == settled

    waitUntil(isSettled, what=f"workers {settled} and a spare or two")
    snapshot = busyWith(server, "/sleep")
    url = f"http://127.0.0.1:{statusPort(server)}/"
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile-1")
    rows = re.findall(r'<tr class="worker" data-pid="(\d+)" data-state="(\w+)">(.*?)</tr>', dom, re.S)
    # Spares come and go as workers near their limits; the others stay
    # while the slow request runs.
    assert {int(pid) for pid, state, _ in rows if state != "spare"} == {
        w["pid"] for w in snapshot["workers"] if w["state"] != "spare"
    }
    busy = [cells for _, state, cells in rows if state == "busy"]
    assert len(busy) == 1 and "/sleep" in busy[0]
    assert re.search(r"<title>prefork: testapp:application</title>", dom)
    assert "requests/s (10 s)" in dom and "restarts" in dom
    assert "<th>RSS</th><th>USS</th><th>PSS</th>" in dom
    # A worker's unique and proportional memory is measured from its first
    # second on: a younger one shows its RSS alone.
    memory = [cells for _, _, cells in rows]
    assert all(cells.count(" MB</td>") == 3 or " MB</td><td>-</td><td>-</td>" in cells for cells in memory), memory
    # The history chart, inline: a line through one point per step.
    [points] = re.findall(r'<svg class="chart".*?<polyline points="([^"]+)"', dom, re.DOTALL)
    assert len(points.split()) >= len(bursts)
    assert "<script" not in dom and not re.search(r'\b(src|href)="', dom)
    screenshot = tmp_path / "status.png"
    chromium(
        "--hide-scrollbars", "--window-size=1280,600", f"--screenshot={screenshot}", url, profile=tmp_path / "profile-2"
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("PREFORK_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(screenshot, SCREENSHOT)


def test_restarts_by_crash_and_reload(serve) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", "--spare-workers", "1")
    waitUntil(lambda: status(server)["workers_by_state"]["spare"] == 1, what="the spare to boot")
    victim = next(w["pid"] for w in status(server)["workers"] if w["state"] == "idle")
    os.kill(victim, signal.SIGKILL)
    waitUntil(lambda: status(server)["restarts"]["crash"] == 1, what="the crash counted")
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 1 has ended")
    snapshot = status(server)
    # Generation 1's two workers and its spare.
    assert snapshot["restarts"] == {"limit": 0, "reload": 3, "crash": 1, "timeout": 0, "memory": 0}
    assert snapshot["generation"] == 2
    assert {w["generation"] for w in snapshot["workers"]} == {2}


def test_status_on_unix_socket(serve, tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    server = serve(*APP, "--status", f"unix:{path}", "--workers", "1", "--spare-workers", "0")
    server.waitFor(rf"Status page on unix:{re.escape(str(path))}")
    connection = UnixHTTPConnection(str(path))
    connection.request("GET", "/status.json")
    response = connection.getresponse()
    assert response.status == 200
    assert len(json.loads(response.read())["workers"]) == 1
    connection.close()


def test_bad_status_endpoint(servers) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        for endpoint, message in [
            ("bogus:1", "--status 'bogus:1' is not a server endpoint"),
            (f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1", "--status 'tcp:"),
        ]:
            server = Server(*APP, "--status", endpoint)
            servers.append(server)
            server.start()
            assert server.wait() != 0
            assert message in server.output, server.output
            assert "Traceback" not in server.output
    finally:
        taken.close()
