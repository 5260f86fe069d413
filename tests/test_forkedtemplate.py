"""
The first generation's template is forked from the master; later ones are
new Pythons.  Both must behave the same: output, warnings, daemon mode.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from prefork.master.forkedtemplate import canFork
from prefork.proctitle import AVAILABLE as TITLES
from server import APPS, TIMEOUT, alive, descendants, parentPid, twistd, waitUntil
from superdaemon import freePort

APP = ("--app", "startupapp:application", "--workers", "1", "--spare-workers", "0")

titles = pytest.mark.skipif(not TITLES, reason="the template is forked only where process titles can be set")


def _about(server) -> dict[str, object]:
    status, _, body = server.get("/")
    assert status == 200
    return json.loads(body)


@titles
def test_first_generation_is_forked_reloads_are_new_pythons(serve) -> None:
    server = serve(*APP)
    assert _about(server)["masterCode"] is True
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 2 serving")
    waitUntil(lambda: _about(server)["masterCode"] is False, what="a worker of the new generation")


def test_import_output_reaches_the_log_once_per_generation(serve) -> None:
    server = serve(*APP)
    assert server.get("/")[0] == 200
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 2 serving")
    server.waitFor(r"Generation 1 has ended")
    assert [line for line in server.lines if line.endswith("startupapp: imported")] == ["startupapp: imported"] * 2
    assert len([line for line in server.lines if "UserWarning: startupapp: a warning at import" in line]) == 2
    # The master's log lines were not written a second time by its fork.
    assert len([line for line in server.lines if "Listening on" in line]) == 1
    timestamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert not [line for line in server.lines if re.search(f"{timestamp}.*{timestamp}", line)]


def test_daemonized(tmp_path: Path) -> None:
    """
    Without -n, twistd forks into the background before it starts the
    master: the template must be the daemon's child.
    """
    port = freePort()
    pidfile, logfile = tmp_path / "twistd.pid", tmp_path / "twistd.log"
    command = [twistd(), f"--pidfile={pidfile}", f"--logfile={logfile}", "prefork",
               "--listen", f"tcp:{port}:interface=127.0.0.1", *APP]
    assert subprocess.run(command, cwd=APPS, timeout=TIMEOUT).returncode == 0
    waitUntil(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file")
    master = int(pidfile.read_text())
    seen: set[int] = set()
    try:
        waitUntil(lambda: "Generation 1 serving" in logfile.read_text(), what="the daemon to serve")
        seen = descendants(master)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        connection.request("GET", "/")
        about = json.loads(connection.getresponse().read())
        connection.close()
        assert parentPid(about["template"]) == master
    finally:
        os.kill(master, signal.SIGTERM)
        waitUntil(lambda: not any(alive(pid) for pid in {master, *seen}), what="the daemon and its children to exit")
    log = logfile.read_text()
    assert "All workers have exited" in log
    # Standard output is /dev/null in a daemon; warnings go to the log.
    assert "UserWarning: startupapp: a warning at import" in log


def test_no_fork_once_the_reactor_runs_or_threads_exist() -> None:
    reactor = Clock()
    reactor.running = False  # type: ignore[attr-defined]
    assert canFork(reactor) is TITLES
    reactor.running = True  # type: ignore[attr-defined]
    assert not canFork(reactor)
    reactor.running = False  # type: ignore[attr-defined]
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not canFork(reactor)
    finally:
        release.set()
        thread.join()


def test_app_that_starts_threads_is_imported_in_each_worker(serve) -> None:
    """
    The template (forked or not) finds the thread and starts over as a new
    Python that leaves the import to the workers.
    """
    server = serve("--app", "threadapp:application", "--workers", "2", "--spare-workers", "0")
    server.waitFor(r"Importing threadapp:application installs a reactor or starts threads: not preloading it")
    about = json.loads(server.get("/")[2])
    assert about["importedIn"] == about["worker"]
    assert about["tickerAlive"] is True
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 2 serving")
    server.waitFor(r"Generation 1 has ended")
    # The templates' own lines come through their output pipes, which the
    # master reads apart from their status.
    waitUntil(lambda: len(re.findall("not preloading it", server.output)) == 2, what="both templates' notes")


def test_master_without_standard_error(tmp_path: Path) -> None:
    """
    A master started with descriptor 2 closed (C{2>&-}) still starts its
    template, whose standard error is a pipe to the master.
    """
    port = freePort()
    output = tmp_path / "output"
    command = [twistd(), "-n", "--pidfile=", "prefork", "--listen", f"tcp:{port}:interface=127.0.0.1", *APP]
    with output.open("wb") as out:
        server = subprocess.Popen(command, cwd=APPS, stdin=subprocess.DEVNULL, stdout=out,
                                  preexec_fn=lambda: os.close(2), start_new_session=True)
    seen: set[int] = set()
    try:
        waitUntil(lambda: "Generation 1 serving" in output.read_text() or server.poll() is not None,
                  what="the server to serve")
        seen = descendants(server.pid)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.terminate()
        server.wait(TIMEOUT)
        waitUntil(lambda: not any(alive(pid) for pid in seen), what="the server's children to exit")
    assert "UserWarning: startupapp: a warning at import" in output.read_text()
