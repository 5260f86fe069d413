"""
Under Server::Starter's real C{start_server}: the server serves the sockets
it passes, and a hot deploy (HUP to start_server: a new master starts, the
old one gets TERM and drains) loses no request under load.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from server import APPS, TIMEOUT, Server, twistd
from superdaemon import SUPERAPP, NewConnectionLoad, deployApp, freePort, getJSON
from tools import program, requires


def startServer(servers: list[Server], directory: Path, listen: int | str) -> Server:
    option = f"--port=127.0.0.1:{listen}" if isinstance(listen, int) else f"--path={listen}"
    server = Server(*SUPERAPP, listen=None, cwd=directory, prefix=(program("start_server"), option, "--"))
    servers.append(server)
    server.start()
    key = f"127.0.0.1:{listen}" if isinstance(listen, int) else listen
    server.waitFor(rf"Listening on \S+ \(from Server::Starter {key}\)")
    server.waitFor("Generation 1 serving")
    server.recordProcesses()
    return server


@requires("start_server")
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_hot_deploy_under_load(servers: list[Server], tmp_path: Path, kind: str) -> None:
    deployApp(tmp_path, "1")
    address: int | str = freePort() if kind == "tcp" else str(tmp_path / "app.sock")
    server = startServer(servers, tmp_path, address)
    answer = getJSON(address)
    assert (answer["version"], answer["leaked"]) == ("1", {})

    with NewConnectionLoad(address) as load:
        load.waitForAnswers(50)
        deployApp(tmp_path, "2")
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.waitFor("Generation 1 serving", after=mark)
        server.recordProcesses()
        server.waitFor(r"old worker \d+ died, status:0", after=mark)
        load.waitForAnswers(len(load.answers) + 50)
    versions = load.versions()
    print(f"\n{kind}: {len(versions)} answers, {len(load.failures)} failures, {versions.count('1')} from version 1")
    assert load.failures == []
    assert all(status == 200 for status, _ in load.answers)
    assert versions[0] == "1" and versions[-1] == "2"
    assert getJSON(address)["version"] == "2"
    assert server.stop() == 0


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"SERVER_STARTER_PORT": "garbage"}, "SERVER_STARTER_PORT: 'garbage' is not PORT=FD"),
        ({"SERVER_STARTER_PORT": "8080=notafd"}, "SERVER_STARTER_PORT: 'notafd' is not a file descriptor"),
        ({"EINHORN_FDS": "77"}, "einhorn fd 77: descriptor 77 is not a socket"),
    ],
)
def test_bad_environment(variables: dict[str, str], message: str) -> None:
    """
    Sockets named wrongly in the environment stop the server with one line
    that says which variable and why.
    """
    result = subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork"], cwd=APPS, env=dict(os.environ, **variables),
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"twistd prefork: {message}"), result.stderr
