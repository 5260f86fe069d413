"""
Unit tests of the pieces behind the status page and the access log, on top
of the tests that run the real server.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from prefork.child import heartbeat
from prefork.master.workers import RESTART_REASONS, Tally, WorkerRecord, WorkerState, restartReason
from prefork.memory import MemoryUsage, memoryUsage, residentBytes, uniqueBytes
from prefork.messages import MAX_REFUSAL_STATUSES, Event, ExitReason, Message, WorkerReport, printablePath
from prefork.status.collector import ServerStatus, WorkerStatus, workerState
from prefork.status.metrics import render
from prefork.web.accesslog import COMBINED, checkFormat, escape, logTime
from server import TIMEOUT

EXITED_OK = 0  # a wait status: exited with status 0
KILLED = signal.SIGKILL  # a wait status: killed by SIGKILL


_BYTES = st.integers(0, 2**40)


_REFUSALS = st.dictionaries(st.integers(100, 599), st.integers(1, 10**9), max_size=10)


@given(
    st.integers(0, 10**9), st.integers(0, 1000), _BYTES, st.integers(0, 10**9), st.binary(max_size=300), _BYTES, _BYTES,
    _REFUSALS,
)
def test_report_survives_the_status_pipe(
    served: int, inFlight: int, rss: int, duration: int, path: bytes, uss: int, pss: int, refusals: dict[int, int],
) -> None:
    report = WorkerReport(served, inFlight, rss, duration, printablePath(b"/" + path), uss, pss, refusals)
    line = Message(Event.BEAT, 42, report.toArgs()).encode()
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert Message.decode(line[:-1]).report() == report


def test_report_path_is_one_printable_word() -> None:
    assert printablePath(b"/a b\tc\x00\xff") == "/a\\x20b\\x09c\\x00\\xff"
    assert len(printablePath(b"/" * 1000)) == 200
    assert WorkerReport.fromArgs(("1", "0", "0", "0", "-")).lastPath == ""


def test_beats_across_versions() -> None:
    """
    A beat without the memory fields (from an older worker) is read with
    them at 0; an older master reading a newer beat finds its first five
    fields where it always did.
    """
    assert WorkerReport.fromArgs(("7", "1", "100", "20", "/x")) == WorkerReport(7, 1, 100, 20, "/x")
    args = WorkerReport(7, 1, 100, 20, "/x", uss=60, pss=80).toArgs()
    assert args[:5] == ("7", "1", "100", "20", "/x")
    # The refusals came later still: a beat without them counts none, and
    # a beat with them keeps every older field where it was.
    assert WorkerReport.fromArgs(args[:7]) == WorkerReport(7, 1, 100, 20, "/x", uss=60, pss=80)
    newer = WorkerReport(7, 1, 100, 20, "/x", uss=60, pss=80, refusals={431: 2, 400: 1}).toArgs()
    assert newer[:7] == args[:7] and newer[7:] == ("400:1,431:2",)
    assert args[7:] == ("-",)
    # A later version's fields after the refusals are left alone.
    assert WorkerReport.fromArgs((*newer, "more", "fields")).refusals == {400: 1, 431: 2}


def test_refusals_that_do_not_read_count_nothing() -> None:
    """
    The refusals serve the status page alone: what does not read as them
    is skipped, and the beat, which tells the master the worker lives,
    still reads.
    """
    args = ("7", "1", "100", "20", "/x", "0", "0")
    for word, expected in [
        ("-", {}),
        ("", {}),
        ("400:2,x,4311:1,abc:3,431:,:5,414:-1,408:1:2,413:٣,501:7", {400: 2, 501: 7}),
        ("400=2;431=1", {}),
    ]:
        report = WorkerReport.fromArgs((*args, word))
        assert (report.served, report.refusals) == (7, expected), word


def test_the_longest_beat_is_never_cut() -> None:
    """
    A beat with every field at its widest, refusals for more statuses than
    a beat carries, still fits in one write under PIPE_BUF, whole.
    """
    widest = 2**64
    report = WorkerReport(
        widest, widest, widest, widest, printablePath(b"\xff" * 1000), widest, widest,
        dict.fromkeys(range(100, 1000), widest),
    )
    line = Message(Event.BEAT, 2**22, report.toArgs()).encode()
    assert len(line) <= select.PIPE_BUF and len(line) <= 3072
    read = Message.decode(line[:-1]).report()
    assert read.refusals == dict.fromkeys(range(100, 100 + MAX_REFUSAL_STATUSES), widest)
    assert (read.lastPath, read.pss) == (report.lastPath, widest)


def test_garbled_beat_is_rejected() -> None:
    with pytest.raises(ValueError):
        Message.decode(b"beat 12")
    assert Message.decode(b"beat 12 3").report() == WorkerReport(served=3)
    with pytest.raises(ValueError):
        Message.decode(b"beat 12 x 0 0 0 /")


@pytest.mark.parametrize(
    "reason, status, generationStopping, serverStopping, expected",
    [
        (ExitReason.LIMIT, EXITED_OK, False, False, "limit"),
        (ExitReason.MEMORY, EXITED_OK, False, False, "memory"),
        (ExitReason.STOP, EXITED_OK, True, False, "reload"),
        (ExitReason.STOP, EXITED_OK, False, False, None),  # TTOU: one worker fewer
        (ExitReason.STOP, EXITED_OK, True, True, None),  # the server stops
        (None, KILLED, False, False, "crash"),
        (ExitReason.LIMIT, 3 << 8, False, False, "crash"),
        (None, KILLED, True, True, None),
        (ExitReason.TIMEOUT, KILLED, False, False, "timeout"),
    ],
)
def test_restart_reasons(
    reason: ExitReason | None, status: int, generationStopping: bool, serverStopping: bool, expected: str | None
) -> None:
    generation = SimpleNamespace(stopping=generationStopping)
    record = WorkerRecord(1, reason=reason)
    assert restartReason(generation, record, status, serverStopping) == expected


def test_tally_counts_served_and_restarts() -> None:
    tally = Tally()
    generation = SimpleNamespace(stopping=False)
    tally.workerExited(generation, WorkerRecord(1, served=5, reason=ExitReason.LIMIT), EXITED_OK, False)
    tally.workerExited(generation, WorkerRecord(2, served=2), KILLED, False)
    assert tally.served == 7
    assert tally.restarts == {"limit": 1, "reload": 0, "crash": 1, "timeout": 0, "memory": 0}


def test_tally_counts_refusals_of_the_workers_gone() -> None:
    """
    The refusals a worker's last heartbeat told are added up as it exits,
    whatever the reason.
    """
    tally = Tally()
    generation = SimpleNamespace(stopping=False)
    first, second = WorkerRecord(1), WorkerRecord(2)
    first.beat(WorkerReport(served=3, refusals={400: 2, 431: 1}))
    second.beat(WorkerReport(served=1, refusals={400: 1, 414: 4}))
    tally.workerExited(generation, first, EXITED_OK, False)
    tally.workerExited(generation, second, KILLED, True)
    tally.workerExited(generation, WorkerRecord(3), EXITED_OK, False)
    assert tally.refusals == {400: 3, 414: 4, 431: 1}


def test_worker_states() -> None:
    record = WorkerRecord(1)
    assert workerState(record) == "booting"
    record.state = WorkerState.SERVING
    assert workerState(record) == "idle"
    record.spare = True
    assert workerState(record) == "spare"
    record.spare = False
    record.report = WorkerReport(inFlight=2)
    assert workerState(record) == "busy"
    record.state = WorkerState.DRAINING
    assert workerState(record) == "draining"


def sampleStatus() -> ServerStatus:
    workers = [
        WorkerStatus(101, 3, "busy", 57, 100, 1, 30 << 20, 12.5, '/a"b\\c', 1500, uss=12 << 20, pss=18 << 20),
        WorkerStatus(102, 3, "idle", 3, 0, 0, 31 << 20, 2.0, "", 0, uss=13 << 20, pss=19 << 20),
    ]
    restarts = dict.fromkeys(RESTART_REASONS, 0) | {"limit": 4}
    refusals = {400: 5, 408: 0, 413: 0, 414: 1, 431: 2, 501: 0}
    return ServerStatus(
        7, "app:application", 60.0, 3, 2, 1234, 12.5, restarts, workers, history=(0.0, 4.5, 12.3333),
        refusals=refusals,
    )


def test_metrics_parse() -> None:
    families = {f.name: f for f in text_string_to_metric_families(render(sampleStatus()))}
    assert families["prefork_requests"].type == "counter"
    assert [s.value for s in families["prefork_requests"].samples] == [1234]
    restarts = {s.labels["reason"]: s.value for s in families["prefork_restarts"].samples}
    assert restarts == {"limit": 4, "reload": 0, "crash": 0, "timeout": 0, "memory": 0}
    served = {s.labels["worker"]: s.value for s in families["prefork_worker_requests"].samples}
    assert served == {"101": 57, "102": 3}
    states = {(s.labels["worker"], s.labels["state"]) for s in families["prefork_worker_state"].samples if s.value}
    assert states == {("101", "busy"), ("102", "idle")}
    durations = {s.labels["worker"]: s.value for s in families["prefork_worker_last_request_duration_seconds"].samples}
    assert durations["101"] == pytest.approx(0.0015)
    unique = {s.labels["worker"]: s.value for s in families["prefork_worker_unique_memory_bytes"].samples}
    proportional = {s.labels["worker"]: s.value for s in families["prefork_worker_proportional_memory_bytes"].samples}
    assert (unique, proportional) == ({"101": 12 << 20, "102": 13 << 20}, {"101": 18 << 20, "102": 19 << 20})
    assert all(f.name.startswith("prefork_") for f in families.values())


def test_metrics_count_refusals_by_status() -> None:
    families = {f.name: f for f in text_string_to_metric_families(render(sampleStatus()))}
    refused = families["prefork_refused_requests"]
    assert refused.type == "counter"
    assert {s.name for s in refused.samples} == {"prefork_refused_requests_total"}
    assert {s.labels["status"]: s.value for s in refused.samples} == {
        "400": 5, "408": 0, "413": 0, "414": 1, "431": 2, "501": 0,
    }


def test_status_json_schema() -> None:
    data = sampleStatus().toJSON()
    assert data["workers_by_state"] == {"booting": 0, "spare": 0, "idle": 1, "busy": 1, "draining": 0}
    assert data["workers"][0] == {
        "pid": 101, "generation": 3, "state": "busy", "served": 57, "limit": 100, "in_flight": 1,
        "rss_bytes": 30 << 20, "age_seconds": 12.5, "last_path": '/a"b\\c', "last_duration_us": 1500,
        "uss_bytes": 12 << 20, "pss_bytes": 18 << 20,
    }
    assert data["requests_per_second_history"] == [0.0, 4.5, 12.33]
    assert data["refused_by_status"] == {"400": 5, "408": 0, "413": 0, "414": 1, "431": 2, "501": 0}
    assert list(data["refused_by_status"]) == sorted(data["refused_by_status"])


def test_page_escapes_paths() -> None:
    from prefork.status.page import renderPage

    page = renderPage(sampleStatus())
    assert "/a&quot;b\\c" in page and '/a"b' not in page
    assert page.count('<tr class="worker"') == 2


def test_page_shows_memory_and_history() -> None:
    from prefork.status.page import renderPage

    page = renderPage(sampleStatus())
    assert "<th>USS</th><th>PSS</th>" in page
    assert "12.0 MB" in page and "18.0 MB" in page
    # The history, drawn inline: no script, nothing fetched.
    assert page.count("<svg") == 1 and "<script" not in page and "src=" not in page
    assert "12.3/s now · peak 12.3/s · one point per 5 s, kept 5 min" in page


def test_page_shows_refusals_by_status() -> None:
    from prefork.status.page import renderPage

    page = renderPage(sampleStatus())
    assert (
        '<div class="card list"><b><em>5</em> 400 · <em>0</em> 408 · <em>0</em> 413 · <em>1</em> 414 · '
        "<em>2</em> 431 · <em>0</em> 501</b><small>refused by the server, by status</small></div>"
    ) in page


class FakeSite:
    served = 0
    inFlight = 0
    lastPath = b"/"
    lastDuration = 0.0

    def __init__(self) -> None:
        self.refusals: dict[int, int] = {}


def readLines(fd: int) -> list[bytes]:
    try:
        return os.read(fd, 65536).splitlines()
    except BlockingIOError:
        return []


class ThrottleTime:
    """
    The clock of a heartbeat's throttle, set by the test; the held-change
    thread's sleep lasts until the test lets it end.
    """

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.sleeping = threading.Event()
        self.wakeUp = threading.Event()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.sleeping.set()
        assert self.wakeUp.wait(TIMEOUT), "the test never ended the throttle's sleep"


def heartbeatThreads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "prefork-heartbeat"]


def test_heartbeat_throttles_changes(monkeypatch) -> None:
    clock = ThrottleTime()
    others = heartbeatThreads()
    monkeypatch.setattr(heartbeat, "time", clock)
    monkeypatch.setattr(heartbeat, "MIN_INTERVAL", 0.5)
    readEnd, writeEnd = os.pipe()
    os.set_blocking(readEnd, False)
    try:
        site = FakeSite()
        beat = heartbeat.Heartbeat(5, site, writeEnd)
        # The first change goes out at once, before anything else happens.
        site.inFlight = 1
        beat.changed()
        assert [Message.decode(line).report().inFlight for line in readLines(readEnd)] == [1]
        # Changes within the interval are held, to be sent together once
        # the interval has passed.
        clock.now += 0.1
        for i in range(100):
            site.inFlight = i % 2
            site.served = i
            beat.changed()
        assert clock.sleeping.wait(TIMEOUT)
        [sender] = [thread for thread in heartbeatThreads() if thread not in others]
        assert clock.slept == [pytest.approx(0.4)]
        assert readLines(readEnd) == []
        clock.now += 0.4
        clock.wakeUp.set()
        assert select.select([readEnd], [], [], TIMEOUT)[0] == [readEnd]
        [held] = [Message.decode(line).report() for line in readLines(readEnd)]
        assert (held.served, held.inFlight) == (99, 1)
        # Stopping sends the final report and ends the thread.
        site.served = 100
        beat.stop()
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        assert [Message.decode(line).report().served for line in readLines(readEnd)] == [100]
    finally:
        os.close(readEnd)
        os.close(writeEnd)


def test_heartbeat_reports_refusals() -> None:
    """
    Every beat carries the refusals counted so far, by status; a report
    keeps them as they were when it was made.
    """
    readEnd, writeEnd = os.pipe()
    os.set_blocking(readEnd, False)
    try:
        site = FakeSite()
        beat = heartbeat.Heartbeat(5, site, writeEnd)
        beat.beat()
        site.refusals.update({400: 2, 431: 1})
        report = beat.report()
        site.refusals[400] += 1
        assert report.refusals == {400: 2, 431: 1}
        beat.beat()
        assert [Message.decode(line).report().refusals for line in readLines(readEnd)] == [{}, {400: 3, 431: 1}]
    finally:
        os.close(readEnd)
        os.close(writeEnd)


def test_access_log_format() -> None:
    checkFormat(COMBINED)
    with pytest.raises(ValueError, match=r"unknown field \{host\}"):
        checkFormat("{host}")
    with pytest.raises(ValueError, match="not a valid format"):
        checkFormat("{method")
    assert escape(b'a"b\\c\n\xe9') == 'a\\"b\\\\c\\x0a\\xe9'
    assert logTime(0) == "[01/Jan/1970:00:00:00 +0000]"


def test_memory_readers() -> None:
    assert 1 << 20 < residentBytes() < 1 << 34
    assert 0 < uniqueBytes() <= residentBytes()
    assert residentBytes(2**22 + 1) == uniqueBytes(2**22 + 1) == 0
    usage = memoryUsage()
    assert 0 < usage.uss <= usage.pss <= usage.rss
    assert memoryUsage(2**22 + 1) == MemoryUsage()


def test_chart_scale_and_labels() -> None:
    from prefork.status.chart import describeSpan, niceCeiling

    assert [niceCeiling(v) for v in (0, 0.4, 1, 1.2, 2.2, 3, 7, 12, 250, 251, 9999)] == [
        1, 1, 1, 2, 2.5, 5, 10, 20, 250, 500, 10000,
    ]
    assert [describeSpan(s) for s in (5, 60, 150, 300)] == ["5 s", "1 min", "2 min 30 s", "5 min"]


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=60))
def test_chart_draws_every_point_inside(rates: list[float]) -> None:
    import re

    from prefork.status.chart import HEIGHT, WIDTH, rateChart

    svg = rateChart(rates, 5)
    [points] = re.findall(r'<polyline points="([^"]+)"', svg)
    coordinates = [tuple(map(float, point.split(","))) for point in points.split()]
    assert len(coordinates) == len(rates)
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in coordinates)
    assert [x for x, _ in coordinates] == sorted(x for x, _ in coordinates)


def test_chart_before_two_points() -> None:
    from prefork.status.chart import rateChart

    assert "collecting: one point every 5 s" in rateChart([], 5)
    assert "<polyline" not in rateChart([3.0], 5)
