"""
Unit tests of the template's bookkeeping (L{prefork.child.template.Template}):
what it forks, reaps, reports and signals, with C{fork}, C{waitpid}, C{kill}
and the reads of its command pipe played by the test.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from prefork.config import ServerConfig
from prefork.messages import Event, Message

# The template turns the garbage collector off as it is imported, for its
# own forks' sake; this test process wants it on.
_collecting = gc.isenabled()
from prefork.child import template  # noqa: E402 - once the collector's state is noted

if _collecting:
    gc.enable()

LISTENERS = [(7, socket.AF_INET), (8, socket.AF_UNIX)]


class FakeOS:
    """
    The C{os} module as the template sees it: forks return the pids the test
    gives, C{waitpid} reports the exits it queues, C{kill} and C{close} are
    recorded, and the command pipe yields the pieces it queues.  Anything
    else is the real C{os}.
    """

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.exits: list[tuple[int, int]] = []
        self.waits = 0
        self.killed: list[tuple[int, int]] = []
        self.closed: list[int] = []
        self.input: list[bytes] = []

    def fork(self) -> int:
        return self.pids.pop(0)

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert (pid, options) == (-1, os.WNOHANG)
        self.waits += 1
        return self.exits.pop(0) if self.exits else (0, 0)

    def kill(self, pid: int, signum: int) -> None:
        self.killed.append((pid, signum))

    def close(self, fd: int) -> None:
        if fd in (7, 8):
            self.closed.append(fd)
        else:
            os.close(fd)

    def read(self, fd: int, size: int) -> bytes:
        assert fd == 0
        return self.input.pop(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


class BecameWorker(Exception):
    """
    Raised where the forked child would become a worker (and never return).
    """


class Forking:
    """
    A template of generation 1 with its fakes, and what it reported.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.os = FakeOS()
        self.sent: list[Message] = []
        monkeypatch.setattr(template, "os", self.os)
        monkeypatch.setattr(template, "send", lambda message: self.sent.append(message) or True)

        def becomeWorker(spare: bool) -> None:
            raise BecameWorker(spare)

        self.template = template.Template(ServerConfig(), 1, None, list(LISTENERS))
        monkeypatch.setattr(self.template, "_becomeWorker", becomeWorker)

    def commands(self, *pieces: bytes) -> None:
        """
        The master writes C{pieces}, each read by one C{read()}.
        """
        self.os.input.extend(pieces)
        for _ in pieces:
            self.template._readCommands()
        assert self.template._commands.pending == 0

    def close(self) -> None:
        self.template._selector.close()
        os.close(self.template._wakeRead)
        os.close(self.template._wakeWrite)


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> Iterator[Forking]:
    fixture = Forking(monkeypatch)
    yield fixture
    fixture.close()


def test_spawn_records_and_reports_each_worker(forking: Forking) -> None:
    forking.os.pids = [101, 102]
    forking.commands(b"spawn\nspawn-spare\n")
    assert forking.template.workers == {101, 102}
    assert forking.sent == [Message(Event.BORN, 101), Message(Event.BORN, 102, ("spare",))]


def test_commands_split_across_reads(forking: Forking) -> None:
    """
    A command may arrive in pieces, and several in one read.
    """
    forking.os.pids = [101, 102, 103]
    forking.commands(b"spa", b"wn\nspawn-sp", b"are\nspawn", b"\n")
    assert [m.args for m in forking.sent] == [(), ("spare",), ()]
    assert forking.template.workers == {101, 102, 103}


def test_the_child_becomes_a_worker(forking: Forking) -> None:
    forking.os.pids = [0]
    with pytest.raises(BecameWorker) as raised:
        forking.commands(b"spawn-spare\n")
    assert raised.value.args == (True,)
    # The child neither counts itself nor reports its own birth.
    assert forking.template.workers == set() and forking.sent == []


def test_reap_reports_each_exit_with_its_status(forking: Forking) -> None:
    forking.os.pids = [101, 102, 103]
    forking.commands(b"spawn\nspawn\nspawn\n")
    forking.sent.clear()
    killed = signal.SIGKILL
    forking.os.exits = [(101, 0), (103, killed)]
    forking.template._reap()
    assert forking.sent == [Message(Event.EXITED, 101, ("0",)), Message(Event.EXITED, 103, (str(killed),))]
    assert forking.template.workers == {102}
    # Worker 102 runs on: waitpid said so, and the reaping stopped there.
    assert forking.os.waits == 3


def test_no_wait_without_workers(forking: Forking) -> None:
    """
    With no worker left, reaping asks nothing of waitpid (which would fail
    with ECHILD).
    """
    forking.template._reap()
    assert forking.os.waits == 0


def test_stop_closes_the_sockets_and_signals_every_worker(forking: Forking) -> None:
    forking.os.pids = [101, 102]
    forking.commands(b"spawn\nspawn\n")
    forking.commands(b"stop 15\nspawn\n")
    assert forking.os.closed == [7, 8] and forking.template.listeners == []
    assert sorted(forking.os.killed) == [(101, 15), (102, 15)]
    # No fork after the stop.
    assert forking.template.workers == {101, 102} and len(forking.sent) == 2
    assert forking.template.stopping
    # The template leaves once every worker is reaped.
    forking.os.exits = [(101, 0), (102, 0)]
    forking.template._reap()
    assert forking.template.workers == set()
    assert forking.sent[-2:] == [Message(Event.EXITED, 101, ("0",)), Message(Event.EXITED, 102, ("0",))]


def test_master_gone_stops_with_term(forking: Forking) -> None:
    class Selector:
        def __init__(self) -> None:
            self.unregistered: list[int] = []

        def unregister(self, fd: int) -> None:
            self.unregistered.append(fd)

        def close(self) -> None:
            pass

    forking.template._selector.close()
    selector = forking.template._selector = Selector()  # type: ignore[assignment]
    forking.os.pids = [101]
    forking.commands(b"spawn\n")
    # End of file on the command pipe.
    forking.commands(b"")
    assert selector.unregistered == [0]
    assert forking.os.killed == [(101, signal.SIGTERM)]
    assert forking.template.stopping and forking.os.closed == [7, 8]
