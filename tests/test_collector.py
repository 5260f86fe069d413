"""
The status collector's snapshot, built from a fake server state on a fake
clock: no master, no processes.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from fakestate import FakeGeneration, FakeServer, worker
from prefork.master.interfaces import IGenerationState, IServerState
from prefork.master.workers import WorkerRecord
from prefork.messages import ExitReason, WorkerReport
from prefork.status.collector import (
    HISTORY_POINTS,
    HISTORY_STEP,
    REFUSAL_STATUSES,
    StatusCollector,
    currentGeneration,
)
from prefork.status.probes import readiness

START = 1000.0


@pytest.fixture
def server() -> FakeServer:
    """
    A reload under way: generation 1 drains one worker, generation 2 has a
    busy worker, an idle one, a spare and one booting.
    """
    old = worker(101, born=START - 100, served=60)
    old.draining(ExitReason.STOP, served=60)
    busy, idle = worker(201, born=START - 10, served=5, inFlight=1), worker(202, born=START - 20, served=3)
    spare, booting = worker(203, born=START - 5, spare=True), WorkerRecord(204, born=START - 1)
    server = FakeServer(
        generations=[FakeGeneration(1, True, [old], True), FakeGeneration(2, False, [busy, idle, spare, booting], True)]
    )
    gone = WorkerRecord(100, served=100)
    gone.draining(ExitReason.LIMIT, served=100)
    server.tally.workerExited(server.generations[0], gone, 0, False)
    return server


def test_the_fakes_provide_the_interfaces(server: FakeServer) -> None:
    verifyObject(IServerState, server)
    for generation in server.generations:
        verifyObject(IGenerationState, generation)


def test_snapshot(server: FakeServer) -> None:
    clock = Clock()
    clock.advance(START)
    collector = StatusCollector(server, clock)
    collector.startService()
    clock.advance(30)
    status = collector.snapshot()
    collector.stopService()
    assert (status.app, status.generation, status.workersWanted) == ("myproject.wsgi:application", 2, 2)
    assert status.uptime == 30
    assert status.requestsTotal == 100 + 60 + 5 + 3
    assert status.restarts == {"limit": 1, "reload": 0, "crash": 0, "timeout": 0, "memory": 0}
    # Generation by generation, the oldest worker first.
    assert [(w.pid, w.generation, w.state) for w in status.workers] == [
        (101, 1, "draining"), (202, 2, "idle"), (201, 2, "busy"), (203, 2, "spare"), (204, 2, "booting"),
    ]
    busy = status.workers[2]
    assert (busy.served, busy.limit, busy.inFlight, busy.rss, busy.age) == (5, 100, 1, 30 << 20, 40)
    assert (busy.lastPath, busy.lastDuration) == ("/p", 1500)
    assert (busy.uss, busy.pss) == (9 << 20, 14 << 20)
    assert status.byState() == {"booting": 1, "spare": 1, "idle": 1, "busy": 1, "draining": 1}


def test_refusals_of_workers_live_and_gone(server: FakeServer) -> None:
    """
    The refusals are those the live workers report plus those the tally
    kept of the workers gone; the usual statuses show even at 0, any other
    status once counted, all in order of status.
    """
    old, busy = server.generations[0].records[0], server.generations[1].records[0]
    old.beat(WorkerReport(served=60, refusals={400: 1}))
    busy.beat(WorkerReport(served=5, inFlight=1, refusals={400: 2, 431: 1, 417: 1}))
    gone = WorkerRecord(99)
    gone.beat(WorkerReport(served=7, refusals={414: 3, 400: 4}))
    server.tally.workerExited(server.generations[0], gone, 0, False)
    collector = StatusCollector(server, Clock())
    assert collector.snapshot().refusals == {400: 7, 408: 0, 413: 0, 414: 3, 417: 1, 431: 1, 501: 0}
    assert list(collector.snapshot().refusals) == sorted(collector.snapshot().refusals)
    # The busy worker retires: what it refused stays counted.
    generation = server.generations[1]
    generation.records.remove(busy)
    busy.exited(0)
    server.tally.workerExited(generation, busy, 0, False)
    assert collector.snapshot().refusals == {400: 7, 408: 0, 413: 0, 414: 3, 417: 1, 431: 1, 501: 0}


def test_no_refusals_yet() -> None:
    status = StatusCollector(FakeServer(), Clock()).snapshot()
    assert status.refusals == dict.fromkeys(REFUSAL_STATUSES, 0)
    assert REFUSAL_STATUSES == (400, 408, 413, 414, 431, 501)


def test_request_rate_over_the_window(server: FakeServer) -> None:
    clock = Clock()
    clock.advance(START)
    collector = StatusCollector(server, clock)
    collector.startService()
    assert collector.snapshot().requestsPerSecond == 0
    busy = server.generations[1].records[0]
    for second in range(1, 21):
        busy.beat(WorkerReport(served=5 + 3 * second))
        clock.advance(1)
    collector.stopService()
    # Three requests a second, over the last ten seconds only.
    assert collector.snapshot().requestsPerSecond == pytest.approx(3.0)


def test_current_generation() -> None:
    assert currentGeneration(FakeServer()) == 0
    assert currentGeneration(FakeServer(generations=[FakeGeneration(3), FakeGeneration(4, stopping=True)])) == 3
    # While the server stops, every generation is stopping: the newest.
    assert currentGeneration(FakeServer(generations=[FakeGeneration(3, True), FakeGeneration(4, True)])) == 4


def test_request_rate_history(server: FakeServer) -> None:
    """
    One point per step, each the rate over its own step, the oldest
    dropped after a few minutes.
    """
    clock = Clock()
    clock.advance(START)
    collector = StatusCollector(server, clock)
    collector.startService()
    busy = server.generations[1].records[0]
    served = busy.served
    for second in range(1, HISTORY_STEP * 3 + 1):
        # 2 requests a second for one step, 10 a second for the next, none
        # in the third.
        served += [2, 10, 0][(second - 1) // HISTORY_STEP]
        busy.beat(WorkerReport(served=served))
        clock.advance(1)
    assert collector.snapshot().history == pytest.approx((2.0, 10.0, 0.0))
    clock.pump([1] * HISTORY_STEP * HISTORY_POINTS)
    history = collector.snapshot().history
    collector.stopService()
    assert len(history) == HISTORY_POINTS and set(history) == {0.0}


def test_ready_while_a_worker_accepts(server: FakeServer) -> None:
    answer = readiness(server)
    assert answer.ready and str(answer) == "ready: 2 workers accepting connections"


def test_ready_during_a_reload(server: FakeServer) -> None:
    """
    A new generation that has not served yet does not make the server
    unready while the old one serves.
    """
    old = server.generations[1]
    server.generations.append(FakeGeneration(3, records=[WorkerRecord(301, born=START)]))
    assert readiness(server).ready
    # The reload is done: the new generation serves, the old one drains.
    old.stopping = True
    assert str(readiness(server)) == "not ready: no worker accepts connections"
    server.generations[-1].records[0].ready(100)
    assert str(readiness(server)) == "ready: 1 worker accepting connections"


def test_not_ready_before_the_first_worker() -> None:
    server = FakeServer(generations=[FakeGeneration(1, records=[WorkerRecord(101, born=START)])])
    assert str(readiness(server)) == "not ready: starting: no worker is ready yet"
    assert str(readiness(FakeServer())) == "not ready: starting: no worker is ready yet"


def test_not_ready_once_stopping(server: FakeServer) -> None:
    server.stopping = True
    assert str(readiness(server)) == "not ready: stopping: finishing the requests in flight"


def test_not_ready_when_no_worker_accepts(server: FakeServer) -> None:
    for record in server.generations[1].records:
        if record.accepting:
            record.draining(ExitReason.LIMIT)
    assert str(readiness(server)) == "not ready: no worker accepts connections"
