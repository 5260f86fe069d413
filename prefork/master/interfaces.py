"""
The contracts between the master's parts.

A L{Generation<prefork.master.generation.Generation>} reports what happens to
its template and workers to an L{IGenerationObserver} (the master), which
decides what to do about it.  The master tells L{ILifecycleObserver}s (the
systemd notifier) how the server as a whole is doing, and shows its state to
the status page and the process title through L{IServerState}, a view they
read and never change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prefork.master.generation import Generation
    from prefork.master.workers import WorkerRecord, WorkerView


class IGenerationObserver(Interface):
    """
    Told what happens in a generation, after the generation has updated its
    table of workers.
    """

    def workerReady(generation: Generation, record: WorkerRecord) -> None:
        """
        A worker has booted and serves, or (a spare) waits to be activated.
        """

    def workerNearing(generation: Generation, record: WorkerRecord) -> None:
        """
        A worker is close to its request limit and wants a successor ready.
        """

    def workerDraining(generation: Generation, record: WorkerRecord) -> None:
        """
        A worker accepts no more connections and finishes what it has.
        """

    def workerExited(generation: Generation, record: WorkerRecord, status: int) -> None:
        """
        A worker has gone, with wait C{status} (negative: it was lost with
        its template).
        """

    def workerFailed(generation: Generation, pid: int, reason: str) -> None:
        """
        Worker C{pid} cannot serve (its application cannot be imported, say),
        for the one-line C{reason}.
        """

    def templateFailed(generation: Generation, reason: str) -> None:
        """
        The template cannot serve, for the one-line C{reason}; it exits.
        """

    def sourceReported(generation: Generation, path: str) -> None:
        """
        The application of C{generation} was loaded from the source file
        C{path} (under C{--reload}).
        """

    def templateExited(generation: Generation, error: BaseException | None) -> None:
        """
        The template process has exited, with C{error} unless it exited 0.
        """

    def generationEnded(generation: Generation) -> None:
        """
        The template and every worker of C{generation} are gone.
        """


class ILifecycleObserver(Interface):
    """
    Told of the server's lifecycle as a whole, e.g. to tell a supervisor.
    """

    def serving(generation: IGenerationState) -> None:
        """
        The workers of C{generation} accept connections: all of them, or
        those left after a reload failed.
        """

    def reloading() -> None:
        """
        A new generation is starting beside the serving one.
        """

    def stopping() -> None:
        """
        The server has begun to stop.
        """


class IGenerationState(Interface):
    """
    One generation, as those who only look at it see it.
    """

    number = Attribute("1 for the first generation, one more for each reload.")
    stopping = Attribute("Whether it has been told to stop: it drains, or has been replaced.")
    everServed = Attribute("Whether any of its workers has become ready.")

    def serving() -> int:
        """
        How many of its workers accept connections.
        """

    def workersByAge() -> Sequence[WorkerView]:
        """
        Its live workers, the oldest first.
        """


class IServerState(Interface):
    """
    The server's state, read-only: what the status page and the process
    title show.
    """

    app = Attribute("The application, as MODULE:NAME.")
    workerCount = Attribute("How many workers each generation keeps serving.")
    generations = Attribute("The L{IGenerationState} of each generation still running, the oldest first.")
    tally = Attribute("The L{Tally<prefork.master.workers.Tally>} of the workers that have exited.")
    stopping = Attribute("Whether the server has begun to stop (TERM, INT, or a failure).")
    sockets = Attribute("The L{ListeningSocket<prefork.master.sockets.ListeningSocket>}s the workers serve.")
