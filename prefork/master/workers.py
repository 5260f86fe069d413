"""
What the master knows of its workers: one L{WorkerRecord} per live worker,
whose state moves only forward (booting, serving, draining, exited), and the
L{Tally} of the workers that are gone.

A record changes through its methods alone, as the reports of its worker
arrive on the status pipe; the rest of the server reads it through
L{WorkerView}.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from prefork.messages import EXIT_DONE, ExitReason, WorkerReport

if TYPE_CHECKING:
    from prefork.master.interfaces import IGenerationState

#: Why workers are replaced, in the order the status page shows them.
RESTART_REASONS = ("limit", "reload", "crash", "timeout", "memory")


class WorkerState(Enum):
    BOOTING = "booting"
    SERVING = "serving"
    DRAINING = "draining"
    EXITED = "exited"


#: The states a worker may move to from each state.  Reports cross on the
#: pipe (a worker told to drain may still report that it is ready), so a
#: move not listed here is ignored rather than refused.
_NEXT = {
    WorkerState.BOOTING: {WorkerState.SERVING, WorkerState.DRAINING, WorkerState.EXITED},
    WorkerState.SERVING: {WorkerState.DRAINING, WorkerState.EXITED},
    WorkerState.DRAINING: {WorkerState.EXITED},
    WorkerState.EXITED: set(),
}


def exitedAsAsked(status: int) -> bool:
    """
    Whether a worker's wait C{status} says it ended as asked (retired,
    stopped, drained); a negative status means it was lost with its template.
    """
    return status >= 0 and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_DONE


def describeExit(status: int) -> str:
    if status < 0:
        return "was lost with its template"
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


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


class WorkerView(Protocol):
    """
    A worker as those who only look at it see it.
    """

    @property
    def pid(self) -> int: ...

    @property
    def state(self) -> WorkerState: ...

    @property
    def spare(self) -> bool: ...

    @property
    def served(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def born(self) -> float: ...

    @property
    def lastHeard(self) -> float: ...

    @property
    def report(self) -> WorkerReport: ...


@dataclass
class WorkerRecord:
    """
    What the master knows of one worker.

    @ivar spare: Booted but not accepting until it is activated.
    @ivar limit: The requests it serves before it retires; 0 for no limit.
    @ivar served: Requests it has served, as last reported.
    @ivar born: When the master first heard of it, in the reactor's seconds.
    @ivar lastHeard: When the master last heard from it.
    @ivar reason: Why it drains or drained; L{None} until it or the master
        says.
    @ivar decided: Whether the master decided the reason, which what the
        worker reports then does not change.
    @ivar nearing: Close to its request limit: a spare is kept ready to
        succeed it.
    @ivar status: Its wait status, once it has exited.
    """

    pid: int
    spare: bool = False
    state: WorkerState = WorkerState.BOOTING
    limit: int = 0
    served: int = 0
    born: float = 0.0
    lastHeard: float = 0.0
    reason: ExitReason | None = None
    decided: bool = False
    nearing: bool = False
    report: WorkerReport = field(default_factory=WorkerReport)
    status: int | None = None

    @property
    def accepting(self) -> bool:
        return self.state is WorkerState.SERVING and not self.spare

    @property
    def counted(self) -> bool:
        """
        Whether it counts toward the generation's size (or its spares).
        """
        return self.state in (WorkerState.BOOTING, WorkerState.SERVING)

    @property
    def timedOut(self) -> bool:
        return self.reason is ExitReason.TIMEOUT

    def _enter(self, state: WorkerState) -> bool:
        if state not in _NEXT[self.state]:
            return False
        self.state = state
        return True

    def heard(self, now: float) -> None:
        self.lastHeard = now

    def silentFor(self, now: float) -> float:
        return now - self.lastHeard

    def ready(self, limit: int) -> None:
        """
        It has booted and serves (or, a spare, waits to be activated) until
        it has served C{limit} requests.
        """
        self.limit = limit
        self._enter(WorkerState.SERVING)

    def activate(self) -> None:
        """
        A spare becomes a worker that counts toward its generation's size.
        """
        self.spare = False

    def beat(self, report: WorkerReport) -> None:
        self.report = report
        self.served = report.served

    def nearLimit(self) -> None:
        self.nearing = True

    def draining(self, reason: ExitReason | None, served: int | None = None) -> None:
        """
        It reports that it accepts no more and finishes what it has, for
        C{reason} (L{None}: one this version does not know), with the count
        of requests it C{served}.  A reason the master decided stays.
        """
        self._enter(WorkerState.DRAINING)
        if served is not None:
            self.served = served
        if reason is not None and not self.decided:
            self.reason = reason

    def drain(self, reason: ExitReason) -> None:
        """
        The master tells it to drain, for C{reason}.
        """
        self._enter(WorkerState.DRAINING)
        self._decide(reason)

    def abort(self) -> None:
        """
        It was silent for too long and is being aborted.
        """
        self._decide(ExitReason.TIMEOUT)

    def _decide(self, reason: ExitReason) -> None:
        # An abort is the last word: it tells why the worker died.
        if not self.timedOut:
            self.reason = reason
        self.decided = True

    @property
    def shownReason(self) -> str:
        """
        The reason as users see it; C{""} when nobody said.
        """
        return self.reason.value if self.reason is not None else ""

    def exited(self, status: int) -> None:
        """
        It has gone, with wait C{status} (negative: lost with its template).
        """
        self._enter(WorkerState.EXITED)
        self.status = status


def restartReason(generation: IGenerationState, record: WorkerRecord, status: int, serverStopping: bool) -> str | None:
    """
    Why the worker of C{record}, which exited with C{status}, is replaced;
    L{None} when it is not (the server stops, or has fewer workers now).
    """
    if record.timedOut:
        return "timeout"
    if serverStopping:
        return None
    if not exitedAsAsked(status):
        return "crash"
    if record.reason in (ExitReason.LIMIT, ExitReason.MEMORY):
        return record.shownReason
    if generation.stopping:
        return "reload"
    return None


@dataclass
class Tally:
    """
    What the master counts of the workers that have exited.

    @ivar served: Requests served by them.
    @ivar restarts: How many were replaced, by reason.
    @ivar refusals: Requests the server refused itself in them, by status,
        as their last heartbeats told.
    """

    served: int = 0
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))
    refusals: dict[int, int] = field(default_factory=dict)

    def workerExited(
        self, generation: IGenerationState, record: WorkerRecord, status: int, serverStopping: bool
    ) -> None:
        self.served += record.served
        for code, count in record.report.refusals.items():
            self.refusals[code] = self.refusals.get(code, 0) + count
        reason = restartReason(generation, record, status, serverStopping)
        if reason is not None:
            self.restarts[reason] = self.restarts.get(reason, 0) + 1
