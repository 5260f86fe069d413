"""
The server's status: what every worker is doing, and what has happened to
the workers that are gone, and how many requests per second it has served
over the last few minutes.

The master learns the first from the workers' heartbeats (see
L{prefork.child.heartbeat}) and keeps it in its generations' worker tables; it
counts the second in a L{Tally<prefork.master.workers.Tally>} as each worker
exits.  The requests the server refused itself (a bad or oversized request,
answered without the application) are counted the same way: by the live
workers in their heartbeats, by the gone ones in the tally.

A L{StatusCollector} reads all this through the master's read-only
L{IServerState} and turns it into a L{ServerStatus} snapshot, which the
status page, its JSON and the Prometheus metrics all render.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from prefork.master.interfaces import IGenerationState, IServerState
from prefork.master.workers import WorkerState, WorkerView

#: The states a worker is shown in.
WORKER_STATES = ("booting", "spare", "idle", "busy", "draining")
#: The statuses the server refuses requests with itself, shown even at 0:
#: a malformed request (400), one not received in time (408), a body, a
#: request line or header fields too large (413, 414, 431), a transfer
#: coding it does not know (501).  Any
#: other status a worker reports is shown too.
REFUSAL_STATUSES = (400, 408, 413, 414, 431, 501)
#: The window over which the request rate is averaged, in seconds.
RATE_WINDOW = 10
#: The request rate's history keeps one point per this many seconds...
HISTORY_STEP = 5
#: ...and this many points: five minutes.
HISTORY_POINTS = 60


@dataclass(frozen=True)
class WorkerStatus:
    """
    One worker, as the status page shows it.

    @ivar lastDuration: In microseconds.
    @ivar rss: Its resident memory in bytes, shared pages included.
    @ivar uss: Its unique memory in bytes: what it alone costs.
    @ivar pss: Its proportional memory in bytes: shared pages split between
        the processes sharing them.
    """

    pid: int
    generation: int
    state: str
    served: int
    limit: int
    inFlight: int
    rss: int
    age: float
    lastPath: str
    lastDuration: int
    uss: int = 0
    pss: int = 0


@dataclass(frozen=True)
class ServerStatus:
    """
    The whole server at one moment.

    @ivar history: The requests per second over each L{HISTORY_STEP}
        seconds of the last few minutes, the oldest first.
    @ivar refusals: The requests the server refused itself in every worker
        past and present, by status, in increasing order of status.
    """

    pid: int
    app: str
    uptime: float
    generation: int
    workersWanted: int
    requestsTotal: int
    requestsPerSecond: float
    restarts: dict[str, int]
    workers: list[WorkerStatus]
    history: tuple[float, ...] = ()
    #: Where the workers serve, as URLs (https for TLS) or unix:PATH.
    listening: tuple[str, ...] = ()
    refusals: dict[int, int] = field(default_factory=dict)

    def byState(self) -> dict[str, int]:
        counts = dict.fromkeys(WORKER_STATES, 0)
        for worker in self.workers:
            counts[worker.state] = counts.get(worker.state, 0) + 1
        return counts

    def toJSON(self) -> dict[str, Any]:
        """
        The status as the JSON object docs/observability.rst documents.
        """
        return {
            "pid": self.pid,
            "app": self.app,
            "uptime": round(self.uptime, 3),
            "generation": self.generation,
            "workers_wanted": self.workersWanted,
            "requests_total": self.requestsTotal,
            "requests_per_second": round(self.requestsPerSecond, 2),
            "workers_by_state": self.byState(),
            "restarts": dict(self.restarts),
            "workers": [_workerJSON(worker) for worker in self.workers],
            "requests_per_second_history": [round(rate, 2) for rate in self.history],
            "listening": list(self.listening),
            "refused_by_status": {str(code): count for code, count in self.refusals.items()},
        }


def _workerJSON(worker: WorkerStatus) -> dict[str, Any]:
    names = {
        "inFlight": "in_flight", "rss": "rss_bytes", "age": "age_seconds", "lastPath": "last_path",
        "lastDuration": "last_duration_us", "uss": "uss_bytes", "pss": "pss_bytes",
    }
    values = asdict(worker)
    values["age"] = round(values["age"], 3)
    return {names.get(key, key): value for key, value in values.items()}


def workerState(record: WorkerView) -> str:
    if record.state is WorkerState.SERVING:
        if record.spare:
            return "spare"
        return "busy" if record.report.inFlight else "idle"
    # Annotated: mypy takes the value of a narrowed enum for Any.
    shown: str = record.state.value
    return shown


def currentGeneration(state: IServerState) -> int:
    """
    The number of the newest generation that is not stopping (0 if none).
    """
    generations: list[IGenerationState] = state.generations
    numbers = [g.number for g in generations if not g.stopping] or [g.number for g in generations]
    return max(numbers, default=0)


class StatusCollector(Service):
    """
    Builds L{ServerStatus} snapshots of the server's C{state}, sampling its
    request count once a second for the request rate, and keeping the rate
    of every L{HISTORY_STEP} seconds for the last L{HISTORY_POINTS} steps.
    """

    def __init__(self, state: IServerState, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.state = state
        self.clock = clock
        self.started = clock.seconds()
        self._samples: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW + 1)
        self._history: deque[float] = deque(maxlen=HISTORY_POINTS)
        self._stepStart: tuple[float, int] | None = None
        self._sampling = LoopingCall(self.sample)
        self._sampling.clock = clock

    def startService(self) -> None:
        super().startService()
        self.started = self.clock.seconds()
        self._sampling.start(1.0)

    def stopService(self) -> None:
        super().stopService()
        if self._sampling.running:
            self._sampling.stop()

    def _workers(self) -> Iterator[tuple[int, WorkerView]]:
        for generation in self.state.generations:
            for record in generation.workersByAge():
                yield generation.number, record

    def requestsTotal(self) -> int:
        live = sum(record.served for _, record in self._workers())
        served: int = self.state.tally.served
        return served + live

    def refusals(self) -> dict[int, int]:
        """
        The requests refused by the server itself, by status: those of
        L{REFUSAL_STATUSES} always, others once counted; in order of status.
        """
        counts = dict.fromkeys(REFUSAL_STATUSES, 0)
        tallied: dict[int, int] = self.state.tally.refusals
        for refusals in [tallied, *(record.report.refusals for _, record in self._workers())]:
            for code, count in refusals.items():
                counts[code] = counts.get(code, 0) + count
        return dict(sorted(counts.items()))

    def sample(self) -> None:
        now, total = self.clock.seconds(), self.requestsTotal()
        self._samples.append((now, total))
        if self._stepStart is None:
            self._stepStart = (now, total)
            return
        then, before = self._stepStart
        # Half a second early is on time: the samples come once a second,
        # a little late or early.
        if now - then >= HISTORY_STEP - 0.5:
            self._history.append((total - before) / (now - then))
            self._stepStart = (now, total)

    def requestsPerSecond(self, now: float, total: int) -> float:
        if not self._samples:
            return 0.0
        then, before = self._samples[0]
        return (total - before) / (now - then) if now > then else 0.0

    def snapshot(self) -> ServerStatus:
        now = self.clock.seconds()
        total = self.requestsTotal()
        workers = [
            WorkerStatus(
                pid=record.pid,
                generation=number,
                state=workerState(record),
                served=record.served,
                limit=record.limit,
                inFlight=record.report.inFlight,
                rss=record.report.rss,
                age=now - record.born,
                lastPath=record.report.lastPath,
                lastDuration=record.report.lastDuration,
                uss=record.report.uss,
                pss=record.report.pss,
            )
            for number, record in self._workers()
        ]
        return ServerStatus(
            pid=os.getpid(),
            app=self.state.app,
            uptime=now - self.started,
            generation=currentGeneration(self.state),
            workersWanted=self.state.workerCount,
            requestsTotal=total,
            requestsPerSecond=self.requestsPerSecond(now, total),
            restarts=dict(self.state.tally.restarts),
            workers=workers,
            history=tuple(self._history),
            listening=tuple(listening.describe() for listening in self.state.sockets),
            refusals=self.refusals(),
        )
