"""
Fakes of the master's read-only view (L{IServerState}, L{IGenerationState}),
for the unit tests of what reads it: the status collector, the probes, the
systemd watchdog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zope.interface import implementer

from prefork.master.interfaces import IGenerationState, IServerState
from prefork.master.workers import Tally, WorkerRecord
from prefork.messages import WorkerReport


@implementer(IGenerationState)
@dataclass
class FakeGeneration:
    number: int
    stopping: bool = False
    records: list[WorkerRecord] = field(default_factory=list)
    everServed: bool = False

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
    stopping: bool = False
    sockets: list[Any] = field(default_factory=list)


def worker(
    pid: int, born: float, served: int = 0, limit: int = 100, inFlight: int = 0, spare: bool = False
) -> WorkerRecord:
    """
    The record of a worker that has booted and reported once, when it was
    C{born}.
    """
    record = WorkerRecord(pid, spare=spare, born=born, lastHeard=born)
    record.ready(limit)
    record.beat(WorkerReport(
        served=served, inFlight=inFlight, rss=30 << 20, lastDuration=1500, lastPath="/p", uss=9 << 20, pss=14 << 20
    ))
    return record
