"""
Worker output written into the master's log (L{prefork.master.outputrelay}):
in twistd's text format, batched into one write, paced while it trickles,
one event a line where twistd's observer is not plain text.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import (
    FileLogObserver,
    Logger,
    LogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)

from prefork.lineframing import Line
from prefork.master.outputrelay import BATCH_INTERVAL, TRICKLE, OutputRelay, TextLogTarget

NAMESPACE = "prefork.master.generation.Generation"


class CountingFile(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_are_formatted_as_twistd_formats_events() -> None:
    """
    A batch reads exactly as the same lines logged one event each through
    twistd's observer, and goes out in one write.
    """
    lines = ["[worker 12] first", "printed by the app", "ünïcode"]
    expected = io.StringIO()
    observed: list[dict[str, Any]] = []
    publisher = LogPublisher(textFileLogObserver(expected), observed.append)
    log = Logger(namespace=NAMESPACE, observer=publisher)
    for line in lines:
        log.info("{line}", line=line)
    now = observed[0]["log_time"]
    assert expected.getvalue().count(expected.getvalue()[:24]) == len(lines), "the lines span a second"
    written = CountingFile()
    target = TextLogTarget(textFileLogObserver(written), NAMESPACE, clock=lambda: now)
    target.write(lines)
    assert written.getvalue() == expected.getvalue()
    assert written.writes == 1


def test_only_a_lone_text_observer_is_written_to() -> None:
    assert TextLogTarget.find(NAMESPACE, [textFileLogObserver(io.StringIO())]) is not None
    assert TextLogTarget.find(NAMESPACE, [jsonFileLogObserver(io.StringIO())]) is None
    assert TextLogTarget.find(NAMESPACE, [textFileLogObserver(io.StringIO()), lambda event: None]) is None
    assert TextLogTarget.find(NAMESPACE, [lambda event: None]) is None
    broken = FileLogObserver(io.StringIO(), lambda event: None)
    assert TextLogTarget.find(NAMESPACE, [broken]) is None


class Pipes:
    def __init__(self) -> None:
        self.reading: dict[int, bool] = {}

    def pause(self, fd: int) -> None:
        self.reading[fd] = False

    def resume(self, fd: int) -> None:
        self.reading[fd] = True


def relay(target: TextLogTarget | None) -> tuple[OutputRelay, Pipes, Clock, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    clock, pipes = Clock(), Pipes()
    log = Logger(namespace=NAMESPACE, observer=events.append)  # type: ignore[arg-type]
    return OutputRelay(log, pipes.pause, pipes.resume, clock.callLater, target), pipes, clock, events


def test_a_trickle_is_paced_a_flood_is_not() -> None:
    written = CountingFile()
    target = TextLogTarget(textFileLogObserver(written), NAMESPACE)
    output, pipes, clock, events = relay(target)
    output.received(2, TRICKLE * 4, [Line(b"a")] * 100)
    assert pipes.reading == {} and written.writes == 1
    output.received(2, 20, [Line(b"b")])
    assert pipes.reading == {2: False} and written.writes == 2
    clock.advance(BATCH_INTERVAL)
    assert pipes.reading == {2: True}
    assert events == [] and written.getvalue().count("\n") == 101


def test_other_observers_get_an_event_a_line() -> None:
    output, _, _, events = relay(None)
    output._looked = True
    output.received(1, 10, [Line(b"one"), Line(b"two")])
    assert [event["line"] for event in events] == ["one", "two"]
