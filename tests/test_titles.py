"""
Process titles, with setproctitle and without it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from server import APPS, Server, waitUntil

APP = ("--app", "testapp:application")


def title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def arguments(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def hideSetproctitle(monkeypatch) -> None:
    # In front of the tree under test, which must stay on the path.
    path = os.pathsep.join(filter(None, [str(APPS / "nosetproctitle"), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def processes(server: Server) -> tuple[int, list[int]]:
    """
    The template of the first generation and its workers: 2, and a spare.
    """
    waitUntil(lambda: len(children(server.pid)) == 1 and len(children(children(server.pid)[0])) == 3, what="3 workers")
    template = children(server.pid)[0]
    return template, children(template)


def test_titles(serve) -> None:
    pytest.importorskip("setproctitle", reason="setproctitle, a dependency, is not installed")
    server = serve(*APP, "--workers", "2", "--spare-workers", "1", "--max-requests", "50")
    template, workers = processes(server)
    for _ in range(5):
        assert server.get("/")[0] == 200
    waitUntil(
        lambda: title(server.pid) == "prefork master [testapp:application] gen 1 workers 2", what="the master's title"
    )
    assert title(template) == "prefork template [testapp:application] gen 1"

    def served() -> list[str]:
        return sorted(title(pid) for pid in workers)

    def counted() -> int:
        return sum(int(t.rsplit(" ", 1)[1].split("/")[0]) for t in served() if t.endswith("/50"))

    # A spare sets its title as it boots, which may be after the others
    # have served.
    waitUntil(
        lambda: counted() == 5 and all(t.startswith("prefork worker ") for t in served()),
        what="the workers' titles, counting 5 requests",
    )
    assert [t.rsplit(" ", 1)[0] for t in served()] == ["prefork worker [testapp:application] gen 1"] * 3
    assert sorted(t.rsplit(" ", 1)[1].endswith("/50") for t in served()) == [False, True, True]
    assert "prefork worker [testapp:application] gen 1 spare" in served()


def test_without_setproctitle(serve, monkeypatch) -> None:
    """
    A platform without setproctitle (a normal dependency, but one that may
    fail to build there) gets a server that works the same, with the
    interpreter's own command lines in C{ps}.
    """
    hideSetproctitle(monkeypatch)
    server = serve(*APP, "--workers", "2", "--spare-workers", "1")
    template, workers = processes(server)
    for _ in range(5):
        assert server.get("/")[0] == 200
    assert "twistd" in title(server.pid)
    assert "prefork.child.template" in title(template)
    assert all("prefork.child.template" in title(pid) for pid in workers)


def templateArguments(app: str, generation: int) -> list[str]:
    return ["-m", "prefork.child.template", "gen", str(generation), f"app={app}"]


def test_command_lines_carry_no_configuration(serve, monkeypatch) -> None:
    """
    Without titles, C{ps} shows the command lines of the templates and the
    workers: they name the generation and the application, and no option's
    value (the configuration reaches the template on its command pipe).
    """
    hideSetproctitle(monkeypatch)
    secrets = ("--max-requests", "4321", "--script-name", "/hidden-prefix", "--forwarded-allow-ips", "10.9.8.7")
    server = serve(*APP, "--workers", "2", "--spare-workers", "1", *secrets)
    template, workers = processes(server)
    for pid in [template, *workers]:
        assert arguments(pid)[1:] == templateArguments("testapp:application", 1)
    server.signal(signal.SIGHUP)
    server.waitFor("Generation 1 has ended")
    template, workers = processes(server)
    for pid in [template, *workers]:
        assert arguments(pid)[1:] == templateArguments("testapp:application", 2)
        assert not any(secret in title(pid) for secret in secrets[1::2])


def test_template_that_starts_over_keeps_its_configuration(serve, monkeypatch) -> None:
    """
    A template whose application starts threads at import becomes a new
    Python; its configuration goes along off the command line, in a file
    its workers do not inherit.
    """
    hideSetproctitle(monkeypatch)
    server = serve("--app", "threadapp:application", "--workers", "2", "--spare-workers", "1", "--max-requests", "4321")
    server.waitFor("not preloading it")
    template, workers = processes(server)
    for pid in [template, *workers]:
        assert arguments(pid)[1:] == templateArguments("threadapp:application", 1)
    for pid in workers:
        descriptors = [os.readlink(link) for link in Path(f"/proc/{pid}/fd").iterdir()]
        assert not [d for d in descriptors if "memfd:" in d], descriptors
