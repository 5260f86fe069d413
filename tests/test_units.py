"""
Unit tests of the pieces that need no processes.
"""

from __future__ import annotations

import threading

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from prefork.child.appload import AppLoadError, loadApp, parseAppSpec
from prefork.child.exitguard import ExitGuard
from prefork.child.worker import drawLimit
from prefork.config import ServerConfig
from prefork.master.supervisor import MAX_BACKOFF, backoff
from prefork.master.workers import describeExit
from prefork.messages import Event, Message
from prefork.tap import Options


class ImmediateReactor(Clock):
    """
    A clock whose callFromThread runs the call at once.
    """

    def callFromThread(self, f, *args, **kwargs) -> None:
        f(*args, **kwargs)


def test_message_round_trip() -> None:
    for message in [
        Message(Event.READY, 12, ("100", "spare")),
        Message(Event.BEAT, 7, ("3",)),
        Message(Event.FATAL, 9, ("cannot import --app 'x:y': no module named 'x'",)),
    ]:
        line = message.encode()
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert Message.decode(line[:-1]) == message


def test_message_stays_under_pipe_buf() -> None:
    line = Message(Event.FATAL, 1, ("x" * 10000 + "\nmore",)).encode()
    assert len(line) < 4096 and line.count(b"\n") == 1


def test_garbage_is_not_a_message() -> None:
    for line in [b"", b"nonsense 1", b"ready notapid"]:
        with pytest.raises(ValueError):
            Message.decode(line)


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [backoff(n) for n in range(1, 12)]
    assert delays[:4] == [0.0, 0.5, 1.0, 2.0]
    assert max(delays) == MAX_BACKOFF
    assert delays == sorted(delays)


def test_describe_exit() -> None:
    assert describeExit(9) == "was killed by SIGKILL"
    assert describeExit(3 << 8) == "exited with status 3"


def test_draw_limit() -> None:
    assert drawLimit(ServerConfig(maxRequests=100)) == 100
    assert drawLimit(ServerConfig(maxRequests=0, minRequests=None)) == 0
    drawn = {drawLimit(ServerConfig(minRequests=3, maxRequests=8)) for _ in range(500)}
    assert drawn == set(range(3, 9))


def test_parse_app_spec() -> None:
    assert parseAppSpec("a.b:c.d") == ("a.b", "c.d")
    for bad in ["nocolon", "a:", ":b", "a b:c", "a:b-c"]:
        with pytest.raises(ValueError):
            parseAppSpec(bad)


def test_load_app_errors_are_one_line() -> None:
    with pytest.raises(AppLoadError, match="no module named 'no_such_module_x'"):
        loadApp("no_such_module_x:app")
    with pytest.raises(AppLoadError, match="has no attribute 'nothing'"):
        loadApp("prefork.demo:nothing")
    with pytest.raises(AppLoadError, match="is not callable"):
        loadApp("prefork.demo:_served")
    assert callable(loadApp("prefork.demo:application"))


def test_options() -> None:
    options = Options()
    options.parseOptions(["--max-workers", "3", "--max-reqs-per-child", "7", "--min-reqs-per-child", "2", "-p", "0"])
    config = options["config"]
    assert (config.workers, config.maxRequests, config.minRequests) == (3, 7, 2)
    assert options["listen"] == ["tcp:0"]
    with pytest.raises(SystemExit, match="--threads"):
        Options().parseOptions(["--threads", "-2"])


def test_config_json_round_trip() -> None:
    config = ServerConfig(app="a:b", workers=3, minRequests=1, pythonPath=("/x",), accessLog="-")
    assert ServerConfig.fromJSON(config.toJSON()) == config


class TestExitGuard:
    def test_waits_for_every_begin(self) -> None:
        guard = ExitGuard(ImmediateReactor())
        guard.begin()
        guard.begin()
        waited = guard.wait()
        fired: list[None] = []
        waited.addCallback(fired.append)
        guard.end()
        assert not fired
        guard.end()
        assert fired == [None]

    def test_idle_guard_fires_at_once(self) -> None:
        fired: list[None] = []
        ExitGuard(ImmediateReactor()).wait().addCallback(fired.append)
        assert fired == [None]

    def test_unbalanced_end_raises_and_keeps_count(self) -> None:
        guard = ExitGuard(ImmediateReactor())
        with pytest.raises(RuntimeError):
            guard.end()
        guard.begin()
        assert guard.pending == 1

    def test_add_deferred(self) -> None:
        guard = ExitGuard(ImmediateReactor())
        work: Deferred[str] = Deferred()
        results: list[str] = []
        guard.add(work).addCallback(results.append)
        fired: list[None] = []
        guard.wait().addCallback(fired.append)
        assert not fired
        work.callback("done")
        assert fired == [None] and results == ["done"]

    def test_threads(self) -> None:
        guard = ExitGuard(ImmediateReactor())
        lock = threading.Lock()

        def work() -> None:
            for _ in range(1000):
                guard.begin()
                with lock:
                    pass
                guard.end()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert guard.pending == 0
