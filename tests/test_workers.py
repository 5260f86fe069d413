"""
What the master knows of its workers: a record's states, and a generation
keeping its table from the status lines and telling its observer, on a fake
clock and without processes.
"""

from __future__ import annotations

import signal

from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from prefork.config import ServerConfig
from prefork.master.generation import Generation
from prefork.master.interfaces import IGenerationObserver, IGenerationState, ILifecycleObserver, IServerState
from prefork.master.sdnotify import NotifyingObserver, SystemdNotifier
from prefork.master.supervisor import Master
from prefork.master.workers import Tally, WorkerRecord, WorkerState, restartReason
from prefork.messages import ACTIVATE_SIGNAL, Event, ExitReason, Message, WorkerReport

KILLED = signal.SIGKILL  # a wait status: killed by SIGKILL


def test_a_worker_moves_forward_only() -> None:
    record = WorkerRecord(10, born=5.0, lastHeard=5.0)
    assert record.state is WorkerState.BOOTING and record.counted and not record.accepting
    record.ready(100)
    assert (record.state, record.limit, record.accepting) == (WorkerState.SERVING, 100, True)
    record.beat(WorkerReport(served=7, inFlight=1))
    assert (record.served, record.report.inFlight) == (7, 1)
    record.draining(ExitReason.LIMIT, served=100)
    assert (record.state, record.reason, record.served) == (WorkerState.DRAINING, ExitReason.LIMIT, 100)
    assert not record.counted and not record.accepting
    # A report that crossed the drain on the pipe does not bring it back.
    record.ready(100)
    assert record.state is WorkerState.DRAINING
    record.exited(0)
    assert (record.state, record.status) == (WorkerState.EXITED, 0)
    record.draining(ExitReason.STOP)
    assert record.state is WorkerState.EXITED


def test_worker_scaled_down_while_booting_stays_draining() -> None:
    record = WorkerRecord(10)
    record.draining(ExitReason.SCALED_DOWN)
    record.ready(100)
    assert (record.state, record.reason, record.counted) == (WorkerState.DRAINING, ExitReason.SCALED_DOWN, False)


def test_spare_accepts_once_activated() -> None:
    record = WorkerRecord(10, spare=True)
    record.ready(100)
    assert record.counted and not record.accepting
    record.activate()
    assert record.accepting


def test_timeout_stays_the_reason() -> None:
    record = WorkerRecord(10)
    record.ready(100)
    record.abort()
    record.draining(ExitReason.STOP, served=3)
    assert record.reason is ExitReason.TIMEOUT and record.served == 3
    record.exited(KILLED)
    tally = Tally()
    tally.workerExited(Generation(1, RecordingObserver(), Clock()), record, KILLED, False)
    assert tally.restarts["timeout"] == 1 and tally.served == 3


def test_restart_reason_of_a_reload() -> None:
    generation = Generation(1, RecordingObserver(), Clock())
    record = WorkerRecord(10)
    record.draining("stop", served=2)
    assert restartReason(generation, record, 0, False) is None
    generation.stopping = True
    assert restartReason(generation, record, 0, False) == "reload"


@implementer(IGenerationObserver)
class RecordingObserver:
    """
    Writes down what a generation tells it.
    """

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def workerReady(self, generation: Generation, record: WorkerRecord) -> None:
        self.events.append(("ready", record.pid))

    def workerNearing(self, generation: Generation, record: WorkerRecord) -> None:
        self.events.append(("nearing", record.pid))

    def workerDraining(self, generation: Generation, record: WorkerRecord) -> None:
        self.events.append(("draining", record.pid, record.reason))

    def workerExited(self, generation: Generation, record: WorkerRecord, status: int) -> None:
        self.events.append(("exited", record.pid, status))

    def workerFailed(self, generation: Generation, pid: int, reason: str) -> None:
        self.events.append(("workerFailed", pid, reason))

    def templateFailed(self, generation: Generation, reason: str) -> None:
        self.events.append(("templateFailed", reason))

    def templateExited(self, generation: Generation, error: BaseException | None) -> None:
        self.events.append(("templateExited", error))

    def generationEnded(self, generation: Generation) -> None:
        self.events.append(("ended",))


class FakeTemplate:
    """
    The process transport of a template: what the master writes to it.
    """

    pid = 5

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def writeToChild(self, fd: int, data: bytes) -> None:
        assert fd == 0
        self.written.append(data)


class QuietGeneration(Generation):
    """
    A generation whose signals are written down, not sent.
    """

    def __init__(self, observer: IGenerationObserver, clock: Clock) -> None:
        super().__init__(1, observer, clock)
        self.transport = FakeTemplate()
        self.signals: list[tuple[int, int]] = []

    def signal(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))


def setUp() -> tuple[QuietGeneration, RecordingObserver, Clock]:
    clock = Clock()
    observer = RecordingObserver()
    return QuietGeneration(observer, clock), observer, clock


def report(generation: Generation, event: Event, pid: int, *args: str) -> None:
    generation.messageReceived(Message(event, pid, args))


def test_generation_keeps_its_table_and_tells_its_observer() -> None:
    generation, observer, clock = setUp()
    verifyObject(IGenerationState, generation)
    generation.spawn()
    assert generation.transport.written == [b"spawn\n"]
    assert generation.active() == 1
    clock.advance(10)
    report(generation, Event.BORN, 10)
    record = generation.workers[10]
    assert (generation.pendingSpawns, record.born, generation.active()) == (0, 10, 1)
    report(generation, Event.READY, 10, "100")
    assert generation.everServed and generation.serving() == 1
    clock.advance(5)
    report(generation, Event.BEAT, 10, "42", "1", "1000", "1500", "/x")
    assert (record.served, record.lastHeard, record.report.lastPath) == (42, 15, "/x")
    report(generation, Event.NEARING, 10)
    assert generation.nearing() == 1
    report(generation, Event.DRAINING, 10, "100", "limit")
    report(generation, Event.EXITED, 10, "0")
    assert generation.workers == {} and record.state is WorkerState.EXITED
    assert observer.events == [("ready", 10), ("nearing", 10), ("draining", 10, ExitReason.LIMIT), ("exited", 10, 0)]


def test_silent_workers_are_found_and_aborted() -> None:
    generation, _, clock = setUp()
    report(generation, Event.BORN, 10)
    report(generation, Event.BORN, 11)
    report(generation, Event.READY, 10, "100")
    clock.advance(30)
    # A booting worker sends no heartbeat yet.
    assert generation.silent(31) == [] and generation.silent(30) == [generation.workers[10]]
    generation.abort(generation.workers[10])
    assert generation.signals == [(10, signal.SIGABRT)]
    assert generation.silent(30) == []


def test_spare_woken_while_booting_is_signalled_once_ready() -> None:
    generation, _, _ = setUp()
    report(generation, Event.BORN, 12, "spare")
    generation.activate(generation.workers[12])
    assert generation.signals == []
    report(generation, Event.READY, 12, "100", "spare")
    assert generation.signals == [(12, ACTIVATE_SIGNAL)]


def test_failures_are_told_apart() -> None:
    generation, observer, _ = setUp()
    report(generation, Event.FATAL, 5, "cannot import --app 'x:y'")
    report(generation, Event.FATAL, 10, "cannot listen")
    assert observer.events == [("templateFailed", "cannot import --app 'x:y'"), ("workerFailed", 10, "cannot listen")]


def test_master_and_notifier_provide_their_interfaces(tmp_path) -> None:
    master = Master(ServerConfig(app="a:b"), [], reactor=Clock())
    verifyObject(IGenerationObserver, master)
    verifyObject(IServerState, master)
    assert master.app == "a:b"
    notifier = SystemdNotifier(str(tmp_path / "notify"))
    try:
        verifyObject(ILifecycleObserver, NotifyingObserver(notifier))
    finally:
        notifier.close()
