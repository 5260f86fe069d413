from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tools
from server import Server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*names): the test needs these programs (or PyPI), see tests/tools.py; "
        f"skipped without them, failed under {tools.REQUIRE_ALL}=1",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """
    Skip a test whose requirements are not met here, naming each and where
    it comes from; fail it instead when every requirement must be met.
    """
    names = [name for mark in item.iter_markers("requires") for name in mark.args]
    missing = tools.unmet(names)
    if not missing:
        return
    if tools.requireAll():
        pytest.fail(f"{tools.REQUIRE_ALL} is set and " + "; ".join(missing), pytrace=False)
    pytest.skip("; ".join(missing))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """
    Say once, after the run, which requirements were missing.
    """
    missing = tools.unmetSoFar()
    if missing:
        terminalreporter.section("missing requirements")
        for line in missing:
            terminalreporter.write_line(line)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """
    Servers a test starts; each is stopped, and checked to leave nothing
    behind, when the test ends.
    """
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def serve(servers: list[Server]):
    """
    Start C{twistd prefork} with the given arguments and wait until it serves.
    """

    def start(*args: str, wait: bool = True, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        servers.append(server)
        server.start()
        return server.serving() if wait else server

    return start


@pytest.fixture
def noInternalErrors(servers: list[Server]) -> Iterator[None]:
    """
    Check, once the test is done, that no server it started logged an
    internal error.
    """
    yield
    for server in servers:
        server.stop()
        assert server.internalErrors() == [], server.output
