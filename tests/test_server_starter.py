"""
Under Server::Starter's real C{start_server}: the server serves the sockets
it passes, and a hot deploy (HUP to start_server: a new master starts, the
old one gets TERM and drains) loses no request under load.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from server import Server, waitUntil
from superdaemon import SUPERAPP, Load, deployApp, freePort, getJSON


def startServer(servers: list[Server], directory: Path, listen: int | str) -> Server:
    option = f"--port=127.0.0.1:{listen}" if isinstance(listen, int) else f"--path={listen}"
    server = Server(*SUPERAPP, listen=None, cwd=directory, prefix=("start_server", option, "--"))
    servers.append(server)
    server.start()
    key = f"127.0.0.1:{listen}" if isinstance(listen, int) else listen
    server.waitFor(rf"Listening on \S+ \(from Server::Starter {key}\)")
    server.waitFor("Generation 1 serving")
    server.recordProcesses()
    return server


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_hot_deploy_under_load(servers: list[Server], tmp_path: Path, kind: str) -> None:
    deployApp(tmp_path, "1")
    address: int | str = freePort() if kind == "tcp" else str(tmp_path / "app.sock")
    server = startServer(servers, tmp_path, address)
    answer = getJSON(address)
    assert (answer["version"], answer["leaked"]) == ("1", {})

    with Load(address) as load:
        waitUntil(lambda: load.sent() >= 50, what="load to begin")
        deployApp(tmp_path, "2")
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.waitFor("Generation 1 serving", after=mark)
        server.recordProcesses()
        server.waitFor(r"old worker \d+ died, status:0", after=mark)
        sent = load.sent()
        waitUntil(lambda: load.sent() >= sent + 50, what="load after the deploy")
    assert load.failures == []
    assert load.versions[0] == "1" and load.versions[-1] == "2"
    assert getJSON(address)["version"] == "2"
    assert server.stop() == 0
