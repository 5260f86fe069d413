"""
Unit tests of the pipes between the processes (L{prefork.messages}), both
ways: the master's commands to a template, and the status lines that
templates and workers send the master.  Each is framed as lines, read back
whatever way the reads split them, and kept under C{PIPE_BUF} so that lines
from concurrent writers never interleave.
"""

from __future__ import annotations

import itertools
import os
import select
import threading
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from prefork.lineframing import MAX_LINE
from prefork.master.generation import Generation
from prefork.messages import STATUS_FD, Command, Event, ExitReason, Message, WorkerReport, send
from server import TIMEOUT
from test_template_units import Forking

MESSAGES = [
    Message(Event.BORN, 101, ("spare",)),
    Message(Event.READY, 101, ("100", "spare")),
    Message(Event.ACTIVE, 101),
    Message(Event.BEAT, 101, WorkerReport(3, 1, 30 << 20, 1500, "/a\\x20b").toArgs()),
    Message(Event.NEARING, 101),
    Message(Event.DRAINING, 101, ("100", "limit")),
    Message(Event.EXITED, 101, ("9",)),
    Message(Event.FATAL, 0, ("cannot import --app 'x:y': no module named 'x'",)),
]
STREAM = b"".join(message.encode() for message in MESSAGES)


class Observer:
    """
    Whatever a generation reports to, recording every call, and every
    status line the generation read.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.received: list[Message] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))

    def messages(self) -> list[Message]:
        return self.received


class Reading(Generation):
    """
    A generation that only records the status lines it reads: the framing
    under test ends where the worker table begins.
    """

    def messageReceived(self, message: Message) -> None:
        self.observer.received.append(message)  # type: ignore[attr-defined]


def generation() -> tuple[Generation, Observer]:
    observer = Observer()
    return Reading(1, observer, Clock()), observer  # type: ignore[arg-type]


def pieces(data: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


class Logged:
    """
    The events logged while in use.
    """

    def __enter__(self) -> list[dict[str, Any]]:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        return self.events

    def __exit__(self, *exc_info: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)


# Templates and workers to the master.


@given(st.sets(st.integers(1, len(STREAM) - 1), max_size=40))
def test_status_lines_split_across_reads(cuts: set[int]) -> None:
    received, observer = generation()
    for piece in pieces(STREAM, cuts):
        received.childDataReceived(STATUS_FD, piece)
    assert observer.messages() == MESSAGES


def test_garbled_status_line_is_logged_and_skipped() -> None:
    received, observer = generation()
    with Logged() as events:
        received.childDataReceived(STATUS_FD, MESSAGES[0].encode() + b"nonsense 12\nbeat 12 x\n" + MESSAGES[1].encode())
    assert observer.messages() == MESSAGES[:2]
    garbled = [e for e in events if "Garbled" in e.get("log_format", "")]
    assert [e["line"] for e in garbled] == [b"nonsense 12", b"beat 12 x"]


def test_output_lines_are_logged_not_read_as_messages() -> None:
    received, observer = generation()
    with Logged() as events:
        received.childDataReceived(2, b"Traceback (most recent call last):\nready 12 ")
        received.childDataReceived(2, b"100\n")
    assert observer.messages() == []
    lines = [e["line"] for e in events if e.get("log_format") == "{line}"]
    assert lines == ["Traceback (most recent call last):", "ready 12 100"]


def test_an_overlong_output_line_is_logged_in_marked_pieces() -> None:
    """
    Output without a newline is logged as it arrives, in pieces of at most
    L{MAX_LINE} bytes, each marked; the master holds no more than one.
    """
    received, _ = generation()
    with Logged() as events:
        for _ in range(5):
            received.childDataReceived(2, b"x" * 50_000)
        received.childDataReceived(2, b"!\nnext\n")
    lines = [e["line"] for e in events if e.get("log_format") == "{line}"]
    cut = f" [cut at {MAX_LINE} bytes, continues]"
    assert lines == [
        "x" * MAX_LINE + cut,
        "[continued] " + "x" * MAX_LINE + cut,
        "[continued] " + "x" * MAX_LINE + cut,
        "[continued] " + "x" * (250_000 - 3 * MAX_LINE) + "!",
        "next",
    ]


def test_an_overlong_status_line_is_garbled() -> None:
    received, observer = generation()
    with Logged() as events:
        received.childDataReceived(STATUS_FD, b"ready 12 " + b"9" * MAX_LINE + b"\n" + MESSAGES[0].encode())
    assert observer.messages() == MESSAGES[:1]
    garbled = [e for e in events if "Garbled" in e.get("log_format", "")]
    assert [len(e["line"]) for e in garbled] == [MAX_LINE, 9]


def test_last_line_without_newline_is_read_at_the_end() -> None:
    """
    A process that died mid-line leaves the rest of its line; the end of the
    pipes delivers it.
    """
    received, observer = generation()
    received.childDataReceived(STATUS_FD, MESSAGES[0].encode() + b"exited 101 0")
    assert observer.messages() == MESSAGES[:1]
    received.processEnded(Failure(ProcessDone(0)))
    assert observer.messages() == [MESSAGES[0], Message(Event.EXITED, 101, ("0",))]
    assert "generationEnded" in [name for name, _ in observer.calls]


words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \n"), min_size=1, max_size=20)


@given(
    st.sampled_from([e for e in Event if e is not Event.BEAT]),
    st.integers(0, 2**22),
    st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000), max_size=5),
)
@example(Event.FATAL, 1, ["Traceback:\n  line 1\n"])
@example(Event.READY, 1, ["\n", "é" * 3000])
def test_every_line_fits_in_pipe_buf(event: Event, pid: int, args: list[str]) -> None:
    """
    Whatever a message carries, its line is one write of at most PIPE_BUF
    bytes, and it still reads as the same event about the same process.
    """
    line = Message(event, pid, tuple(args)).encode()
    assert len(line) <= select.PIPE_BUF
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = Message.decode(line[:-1])
    assert (decoded.event, decoded.pid) == (event, pid)


@given(
    st.sampled_from([e for e in Event if e not in (Event.BEAT, Event.FATAL, Event.SOURCE)]), st.lists(words, max_size=5)
)
def test_words_survive_the_line(event: Event, args: list[str]) -> None:
    message = Message(event, 7, tuple(args))
    assert Message.decode(message.encode()[:-1]) == message


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1, max_size=500))
def test_fatal_keeps_its_reason_whole(reason: str) -> None:
    message = Message(Event.FATAL, 7, (reason,))
    assert Message.decode(message.encode()[:-1]) == message


def test_long_multibyte_line_is_cut_and_still_reads() -> None:
    line = Message(Event.FATAL, 7, ("é" * 5000,)).encode()
    assert len(line) <= select.PIPE_BUF
    assert Message.decode(line[:-1]).args[0].startswith("é" * 100)


def test_concurrent_writers_never_interleave() -> None:
    """
    Writers sharing the pipe, as a template and its workers do, each send
    lines as long as a line can be: every line arrives whole.
    """
    readEnd, writeEnd = os.pipe()
    received = bytearray()

    def read() -> None:
        while chunk := os.read(readEnd, 65536):
            received.extend(chunk)

    def write(pid: int) -> None:
        for i in range(200):
            assert send(Message(Event.FATAL, pid, (f"{i} " + chr(0x41 + pid) * 4000,)), writeEnd)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(pid,)) for pid in range(4)]
    try:
        reader.start()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(TIMEOUT)
    finally:
        os.close(writeEnd)
        reader.join(TIMEOUT)
        os.close(readEnd)
    messages = [Message.decode(line) for line in bytes(received).split(b"\n")[:-1]]
    assert len(messages) == 800
    for message in messages:
        index, text = message.args[0].split(" ", 1)
        assert set(text) == {chr(0x41 + message.pid)}, f"line {index} of writer {message.pid} is mixed"
    for pid in range(4):
        assert [int(m.args[0].split()[0]) for m in messages if m.pid == pid] == list(range(200))


def test_send_tells_when_nobody_reads() -> None:
    readEnd, writeEnd = os.pipe()
    assert send(MESSAGES[0], writeEnd)
    os.close(readEnd)
    try:
        assert not send(MESSAGES[0], writeEnd)
    finally:
        os.close(writeEnd)


# The master to a template.


class ProcessTransport:
    """
    The template process as a generation's transport: what was written to
    its standard input.
    """

    pid = 1234

    def __init__(self) -> None:
        self.written = b""
        self.stdinClosed = False

    def writeToChild(self, fd: int, data: bytes) -> None:
        assert fd == 0
        if self.stdinClosed:
            raise KeyError(0)
        self.written += data


@given(cuts=st.sets(st.integers(1, 40), max_size=10))
def test_commands_reach_the_template_whatever_the_reads(cuts: set[int]) -> None:
    sender, _ = generation()
    transport = sender.transport = ProcessTransport()  # type: ignore[assignment]
    assert sender.command(Command.SPAWN)
    assert sender.command(Command.SPAWN_SPARE)
    assert sender.command(Command.STOP, "15")
    assert transport.written == b"spawn\nspawn-spare\nstop 15\n"
    with pytest.MonkeyPatch.context() as monkeypatch:
        template = Forking(monkeypatch)
        try:
            template.os.pids = [101, 102]
            template.commands(*pieces(transport.written, {c for c in cuts if c < len(transport.written)}))
            assert template.sent == [Message(Event.BORN, 101), Message(Event.BORN, 102, ("spare",))]
            assert sorted(template.os.killed) == [(101, 15), (102, 15)]
        finally:
            template.close()


def test_no_command_without_a_template() -> None:
    sender, _ = generation()
    assert not sender.command(Command.SPAWN)
    transport = sender.transport = ProcessTransport()  # type: ignore[assignment]
    transport.stdinClosed = True
    assert not sender.command(Command.SPAWN)


def test_exit_reasons_cross_the_pipe_by_name() -> None:
    """
    Each reason is one word on the pipe, read back as itself; a word this
    version does not know reads as none.  The words of the reasons a worker
    sends are those of the versions before the enum, so that a master and a
    template of different versions agree during a reload after an upgrade.
    """
    for reason in ExitReason:
        assert reason.word == reason.name.lower() and " " not in reason.word
        line = Message(Event.DRAINING, 7, ("3", reason.word)).encode()
        assert ExitReason.fromWord(Message.decode(line.rstrip(b"\n")).args[1]) is reason
    assert ExitReason.fromWord("sunspots") is None
    assert ExitReason.SCALED_DOWN.value == "scaled down"
    for reason in (ExitReason.LIMIT, ExitReason.MEMORY, ExitReason.STOP, ExitReason.QUICK, ExitReason.ORPHANED):
        assert reason.word == reason.value
