"""
The status collector's snapshot, built from a fake server state on a fake
clock: no master, no processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from prefork.master.interfaces import IGenerationState, IServerState
from prefork.master.workers import Tally, WorkerRecord
from prefork.messages import WorkerReport
from prefork.status.collector import StatusCollector, currentGeneration

START = 1000.0


@implementer(IGenerationState)
@dataclass
class FakeGeneration:
    number: int
    stopping: bool = False
    records: list[WorkerRecord] = field(default_factory=list)

    def serving(self) -> int:
        return sum(1 for record in self.records if record.accepting)

    def workersByAge(self) -> list[WorkerRecord]:
        return sorted(self.records, key=lambda record: record.born)


@implementer(IServerState)
@dataclass
class FakeServer:
    app: str = "myproject.wsgi:application"
    workerCount: int = 2
    generations: list[FakeGeneration] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def worker(
    pid: int, born: float, served: int = 0, limit: int = 100, inFlight: int = 0, spare: bool = False
) -> WorkerRecord:
    record = WorkerRecord(pid, spare=spare, born=born, lastHeard=born)
    record.ready(limit)
    record.beat(WorkerReport(served=served, inFlight=inFlight, rss=30 << 20, lastDuration=1500, lastPath="/p"))
    return record


@pytest.fixture
def server() -> FakeServer:
    """
    A reload under way: generation 1 drains one worker, generation 2 has a
    busy worker, an idle one, a spare and one booting.
    """
    old = worker(101, born=START - 100, served=60)
    old.draining("stop", served=60)
    busy, idle = worker(201, born=START - 10, served=5, inFlight=1), worker(202, born=START - 20, served=3)
    spare, booting = worker(203, born=START - 5, spare=True), WorkerRecord(204, born=START - 1)
    server = FakeServer(
        generations=[FakeGeneration(1, True, [old]), FakeGeneration(2, False, [busy, idle, spare, booting])]
    )
    gone = WorkerRecord(100, served=100)
    gone.draining("limit", served=100)
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
    assert status.byState() == {"booting": 1, "spare": 1, "idle": 1, "busy": 1, "draining": 1}


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
