"""
The server's status: what every worker is doing, and what has happened to
the workers that are gone.

The master learns the first from the workers' heartbeats (see
L{prefork.child.heartbeat}) and keeps it in its generations' worker tables; it
counts the second in a L{Tally} as each worker exits.  A L{StatusCollector}
turns both into a L{ServerStatus} snapshot, which the status page, its JSON
and the Prometheus metrics all render.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from prefork.master.generation import Generation, WorkerRecord, WorkerState
from prefork.messages import EXIT_DONE

if TYPE_CHECKING:
    from prefork.master.supervisor import Master

#: Why workers are replaced, in the order the status page shows them.
RESTART_REASONS = ("limit", "reload", "crash", "timeout", "memory")
#: The states a worker is shown in.
WORKER_STATES = ("booting", "spare", "idle", "busy", "draining")
#: The window over which the request rate is averaged, in seconds.
RATE_WINDOW = 10


def restartReason(generation: Generation, record: WorkerRecord, status: int, serverStopping: bool) -> str | None:
    """
    Why the worker of C{record}, which exited with C{status}, is replaced;
    L{None} when it is not (the server stops, or has fewer workers now).
    """
    if record.reason == "timeout":
        return "timeout"
    if serverStopping:
        return None
    if not (status >= 0 and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_DONE):
        return "crash"
    if record.reason in ("limit", "memory"):
        return record.reason
    if generation.stopping:
        return "reload"
    return None


def exitFields(status: int) -> dict[str, Any]:
    """
    A worker's wait C{status} as log fields: its exit status, or the name
    of the signal that killed it.
    """
    if status < 0:
        return {"exitStatus": None, "signal": None}
    if os.WIFSIGNALED(status):
        return {"exitStatus": None, "signal": signal.Signals(os.WTERMSIG(status)).name}
    return {"exitStatus": os.WEXITSTATUS(status), "signal": None}


@dataclass
class Tally:
    """
    What the master counts of the workers that have exited.

    @ivar served: Requests served by them.
    @ivar restarts: How many were replaced, by reason.
    """

    served: int = 0
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))

    def workerExited(self, generation: Generation, record: WorkerRecord, status: int, serverStopping: bool) -> None:
        self.served += record.served
        reason = restartReason(generation, record, status, serverStopping)
        if reason is not None:
            self.restarts[reason] = self.restarts.get(reason, 0) + 1


@dataclass(frozen=True)
class WorkerStatus:
    """
    One worker, as the status page shows it.

    @ivar lastDuration: In microseconds.
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


@dataclass(frozen=True)
class ServerStatus:
    """
    The whole server at one moment.
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
    #: Where the workers serve, as URLs (https for TLS) or unix:PATH.
    listening: tuple[str, ...] = ()

    def byState(self) -> dict[str, int]:
        counts = dict.fromkeys(WORKER_STATES, 0)
        for worker in self.workers:
            counts[worker.state] = counts.get(worker.state, 0) + 1
        return counts

    def toJSON(self) -> dict[str, Any]:
        """
        The status as the JSON object README.rst documents.
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
            "listening": list(self.listening),
        }


def _workerJSON(worker: WorkerStatus) -> dict[str, Any]:
    names = {"inFlight": "in_flight", "rss": "rss_bytes", "age": "age_seconds", "lastPath": "last_path", "lastDuration": "last_duration_us"}
    values = asdict(worker)
    values["age"] = round(values["age"], 3)
    return {names.get(key, key): value for key, value in values.items()}


def workerState(record: WorkerRecord) -> str:
    if record.state is WorkerState.SERVING:
        if record.spare:
            return "spare"
        return "busy" if record.report.inFlight else "idle"
    return record.state.value


def currentGeneration(master: Master) -> int:
    """
    The number of the newest generation that is not stopping (0 if none).
    """
    numbers = [g.number for g in master.generations if not g.stopping] or [g.number for g in master.generations]
    return max(numbers, default=0)


class StatusCollector(Service):
    """
    Builds L{ServerStatus} snapshots of C{master}, sampling its request
    count once a second for the request rate.
    """

    def __init__(self, master: Master, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.master = master
        self.clock = clock
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW + 1)
        self._sampling = LoopingCall(self.sample)
        self._sampling.clock = clock

    def startService(self) -> None:
        super().startService()
        self.started = time.monotonic()
        self._sampling.start(1.0)

    def stopService(self) -> None:
        super().stopService()
        if self._sampling.running:
            self._sampling.stop()

    def requestsTotal(self) -> int:
        live = sum(record.served for g in self.master.generations for record in g.workers.values())
        return self.master.tally.served + live

    def sample(self) -> None:
        self._samples.append((self.clock.seconds(), self.requestsTotal()))

    def requestsPerSecond(self, now: float, total: int) -> float:
        if not self._samples:
            return 0.0
        then, before = self._samples[0]
        return (total - before) / (now - then) if now > then else 0.0

    def snapshot(self) -> ServerStatus:
        now = time.monotonic()
        total = self.requestsTotal()
        workers = [
            WorkerStatus(
                pid=record.pid,
                generation=generation.number,
                state=workerState(record),
                served=record.served,
                limit=record.limit,
                inFlight=record.report.inFlight,
                rss=record.report.rss,
                age=now - record.born,
                lastPath=record.report.lastPath,
                lastDuration=record.report.lastDuration,
            )
            for generation in self.master.generations
            for record in sorted(generation.workers.values(), key=lambda r: r.born)
        ]
        return ServerStatus(
            pid=os.getpid(),
            app=self.master.config.app,
            uptime=now - self.started,
            generation=currentGeneration(self.master),
            workersWanted=self.master.workerCount,
            requestsTotal=total,
            requestsPerSecond=self.requestsPerSecond(self.clock.seconds(), total),
            restarts=dict(self.master.tally.restarts),
            workers=workers,
            listening=tuple(listening.describe() for listening in self.master.sockets),
        )
