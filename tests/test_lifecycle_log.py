"""
The master logs each lifecycle event with structured fields, for log
pipelines that read twisted.logger's JSON.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from server import APPS, Server, waitUntil

APP = ("--app", "testapp:application")


def events(path: Path, format: str) -> list[dict]:
    found = []
    for record in path.read_text().split("\x1e"):
        if record.strip():
            event = json.loads(record)
            if event.get("log_format", "").startswith(format):
                found.append(event)
    return found


def test_lifecycle_events_have_fields(servers, monkeypatch, tmp_path: Path) -> None:
    log = tmp_path / "events.json"
    monkeypatch.setenv("PYTHONPATH", str(APPS))
    monkeypatch.setenv("PREFORK_TEST_JSON_LOG", str(log))
    server = Server(*APP, "--workers", "1", "--max-requests", "3")
    server.command.insert(3, "--logger=jsonlog.observer")
    servers.append(server)
    server.start().serving()
    pids = {int(server.get("/")[2]) for _ in range(6)}

    waitUntil(lambda: len(events(log, "Worker {pid} exited after")) >= 2, what="two workers retired")
    ready = events(log, "Worker {pid} of generation {generation} ready")
    assert {e["pid"] for e in ready} >= pids
    assert all(e["generation"] == 1 and e["limit"] == 3 for e in ready)
    for retired in events(log, "Worker {pid} exited after"):
        assert retired["reason"] == "limit" and retired["served"] == 3 and retired["generation"] == 1

    victim = int(server.get("/")[2])
    os.kill(victim, signal.SIGKILL)
    waitUntil(lambda: events(log, "Worker {pid} {how}"), what="the crash logged")
    [crash] = events(log, "Worker {pid} {how}")
    assert crash["pid"] == victim and crash["signal"] == "SIGKILL" and crash["exitStatus"] is None

    server.signal(signal.SIGHUP)
    waitUntil(lambda: events(log, "Generation {number} has ended"), what="generation 1 to end")
    assert [e["number"] for e in events(log, "Generation {number} starting")] == [1, 2]
    assert [e["number"] for e in events(log, "Generation {number} serving with")] == [1, 2]
    assert [e["number"] for e in events(log, "Draining generation")] == [1]
    assert [e["number"] for e in events(log, "Generation {number} has ended")] == [1]
