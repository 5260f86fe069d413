"""
The master: the twistd service that owns the listening sockets and
supervises the generations of workers.

Read it top to bottom as a supervisor loop: signals in, reports from the
generations in (the master is their L{IGenerationObserver}), decisions,
actions; its L{HeartbeatWatchdog} aborts the workers that fall silent.  The
master never accepts a connection and never imports the application; it
keeps each generation at its size, replaces workers as they retire or die,
and starts and retires generations.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.logfile import BaseLogFile
from zope.interface import implementer

from prefork.config import ServerConfig
from prefork.master.forkedtemplate import canFork
from prefork.master.generation import Generation
from prefork.master.interfaces import IGenerationObserver, ILifecycleObserver, IServerState
from prefork.master.sockets import ListeningSocket
from prefork.master.twistdlog import findLogFile
from prefork.master.watchdog import HeartbeatWatchdog
from prefork.master.workers import Tally, WorkerRecord, WorkerState, describeExit, exitedAsAsked, exitFields
from prefork.messages import ExitReason

#: A worker dying before any worker of its generation served is a boot
#: failure; after this many in a row the generation is given up.
MAX_BOOT_FAILURES = 5
#: The longest pause between respawns of a crashing worker, in seconds.
MAX_BACKOFF = 30.0
#: How long a quick stop lets workers finish before they are killed.
QUICK_STOP_GRACE = 2.0
#: How long beyond --graceful-timeout a stopping worker has to exit by
#: itself, naming the requests it abandons, before it is killed: it exits
#: within prefork.child.worker.EXIT_GRACE of its deadline.
STOP_KILL_MARGIN = 1.0


def backoff(failures: int) -> float:
    """
    How long to wait before replacing a worker after C{failures} crashes in
    a row: nothing for the first, then 0.5 s doubling up to L{MAX_BACKOFF}.
    """
    if failures <= 1:
        return 0.0
    return min(MAX_BACKOFF, 0.5 * 2.0 ** (failures - 2))


@implementer(IGenerationObserver, IServerState)
class Master(Service):
    """
    Supervises the generations of workers serving on C{sockets}.

    @ivar workerCount: How many workers each generation keeps serving.
    @ivar exitCode: The status twistd exits with; non-zero after a failure.
    @ivar tally: What the workers that have exited served, and why they went.
    """

    _log = Logger()

    def __init__(self, config: ServerConfig, sockets: list[ListeningSocket], reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.sockets = sockets
        self.workerCount = config.workers
        self.generations: list[Generation] = []
        self.stopping = False
        self.quick = False
        self.exitCode = 0
        self._generationNumber = 0
        self._respawns: dict[Generation, IDelayedCall] = {}
        self._killTimer: IDelayedCall | None = None
        self._failures: dict[Generation, int] = {}
        self._announced: set[Generation] = set()
        self.observers: list[ILifecycleObserver] = []
        #: Signals a supervisor gives a meaning of its own (einhorn's USR2).
        self._extraSignals: dict[int, Callable[[], None]] = {}
        self._watchdog = HeartbeatWatchdog(lambda: self.generations, config.timeout, self.reactor, self._log)
        self.tally = Tally()
        self._twistdLog: BaseLogFile | None = None
        self._exitWatchers: list[Callable[[Generation, WorkerRecord, int], None]] = []
        self._sourceWatchers: list[Callable[[str], None]] = []
        self._stopWaiters: list[Deferred[None]] = []

    def addObserver(self, observer: ILifecycleObserver) -> None:
        """
        Tell C{observer} of the server's life from now on.
        """
        self.observers.append(observer)

    def addSignal(self, signum: int, handler: Callable[[], None]) -> None:
        """
        Give C{signum} a meaning of a supervisor's own (einhorn's C{USR2}).
        """
        self._extraSignals[signum] = handler

    def watchExits(self, watcher: Callable[[Generation, WorkerRecord, int], None]) -> None:
        """
        Tell C{watcher} of every worker's exit, with its wait status (the
        hooks' C{child_exit}).
        """
        self._exitWatchers.append(watcher)

    def watchSources(self, watcher: Callable[[str], None]) -> None:
        """
        Tell C{watcher} of each source file of the application that a
        template or worker reports (C{--reload}).
        """
        self._sourceWatchers.append(watcher)

    @property
    def app(self) -> str:
        return self.config.served

    # Starting and stopping.

    def startService(self) -> None:
        super().startService()
        for listening in self.sockets:
            self._log.info("Listening on {address}", address=listening.describe())
        self.reactor.callWhenRunning(self._installSignalHandlers)
        self._watchdog.start()
        self.startGeneration()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.stopping = True
        for observer in self.observers:
            observer.stopping()
        self._watchdog.stop()
        for call in self._respawns.values():
            call.cancel()
        self._respawns.clear()
        for listening in self.sockets:
            listening.close()
        signum = signal.SIGINT if self.quick else signal.SIGTERM
        for generation in self.generations:
            generation.stop(signum)
        grace = QUICK_STOP_GRACE if self.quick else self.config.gracefulTimeout + STOP_KILL_MARGIN
        self._killTimer = self.reactor.callLater(grace, self._killAll)
        done = DeferredList([generation.ended for generation in self.generations])
        done.addCallback(self._stopped)
        return done

    def whenStopped(self) -> Deferred[None]:
        """
        A Deferred that fires once the server has stopped: every worker and
        template has exited.
        """
        waiter: Deferred[None] = Deferred()
        self._stopWaiters.append(waiter)
        return waiter

    def _stopped(self, result: object) -> None:
        if self._killTimer is not None and self._killTimer.active():
            self._killTimer.cancel()
        self._log.info("All workers have exited")
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self.exitCode:
            _exitWith(self.exitCode)

    def _killAll(self) -> None:
        self._killTimer = None
        self._log.warn("Workers still running after the stop timeout: killing them")
        for generation in self.generations:
            generation.kill()

    def fail(self, reason: str) -> None:
        """
        Stop the server because it cannot serve, and exit non-zero.
        """
        self._log.critical("{reason}", reason=reason)
        self.exitCode = 1
        self.quick = True
        if not self.stopping:
            self.reactor.stop()

    # Signals in.

    def _installSignalHandlers(self) -> None:
        # The reactor installed its own as it started; these replace them.
        handlers = {
            signal.SIGTERM: self.gracefulStop,
            signal.SIGINT: self.quickStop,
            signal.SIGQUIT: self.quickStop,
            signal.SIGHUP: self.reload,
            signal.SIGTTIN: self.addWorker,
            signal.SIGTTOU: self.removeWorker,
            **self._extraSignals,
            signal.SIGUSR1: self.reopenLogs,
        }
        # twistd's USR1 handler rotates its log file itself, which does
        # nothing once logrotate has moved the file: reopen it instead.
        self._twistdLog = findLogFile(signal.getsignal(signal.SIGUSR1))
        for signum, handler in handlers.items():
            signal.signal(signum, self._inReactor(handler))

    def _inReactor(self, handler: Callable[[], object]) -> Callable[[int, FrameType | None], None]:
        """
        A signal handler that runs C{handler} in the reactor, outside the
        signal's context.
        """
        return lambda signum, frame: self.reactor.callFromThread(handler)

    def gracefulStop(self) -> None:
        if self.stopping:
            self.quickStop()
            return
        self._log.info("Stopping gracefully")
        self.reactor.stop()

    def quickStop(self) -> None:
        self._log.info("Stopping quickly")
        self.quick = True
        if not self.stopping:
            self.reactor.stop()
            return
        for generation in self.generations:
            generation.stop(signal.SIGINT)
        if self._killTimer is not None and self._killTimer.getTime() > self.reactor.seconds() + QUICK_STOP_GRACE:
            self._killTimer.reset(QUICK_STOP_GRACE)

    def reload(self) -> None:
        if self.stopping:
            return
        self._log.info("Reloading: starting a new generation")
        for observer in self.observers:
            observer.reloading()
        self.startGeneration()

    def reopenLogs(self) -> None:
        """
        Have every worker reopen the access log, and twistd its own log.
        """
        if self._twistdLog is not None:
            self._twistdLog.reopen()
        self._log.info("Reopening log files")
        for generation in self.generations:
            for pid in list(generation.workers):
                generation.signal(pid, signal.SIGUSR1)

    def addWorker(self) -> None:
        self.workerCount += 1
        self._log.info("Now {count} workers", count=self.workerCount)
        self._reconcileAll()

    def removeWorker(self) -> None:
        if self.workerCount <= 1:
            self._log.info("Keeping the last worker")
            return
        self.workerCount -= 1
        self._log.info("Now {count} workers", count=self.workerCount)
        for generation in self._running():
            surplus = generation.active() - self.workerCount
            candidates = [w for w in generation.workers.values() if w.counted and not w.spare]
            for record in candidates[:max(0, surplus)]:
                generation.drain(record, ExitReason.SCALED_DOWN)

    # Reports from the generations in (IGenerationObserver).

    def workerReady(self, generation: Generation, record: WorkerRecord) -> None:
        self._log.info(
            "Worker {pid} of generation {generation} ready, limit {limit} requests",
            pid=record.pid, generation=generation.number, limit=record.limit,
        )
        if generation.serving() == self.workerCount and generation not in self._announced:
            self._announce(generation)

    def workerNearing(self, generation: Generation, record: WorkerRecord) -> None:
        self._reconcile(generation)

    def workerDraining(self, generation: Generation, record: WorkerRecord) -> None:
        self._healthy(generation)
        self._reconcile(generation)

    def workerExited(self, generation: Generation, record: WorkerRecord, status: int) -> None:
        self.tally.workerExited(generation, record, status, self.stopping)
        for exitWatcher in self._exitWatchers:
            exitWatcher(generation, record, status)
        if exitedAsAsked(status):
            self._healthy(generation)
            self._log.info(
                "Worker {pid} exited after {served} requests ({reason})",
                pid=record.pid, generation=generation.number, served=record.served,
                reason=record.shownReason or "stopped",
            )
        elif not (generation.stopping or self.stopping):
            self._log.warn(
                "Worker {pid} {how} after {served} requests{why}",
                pid=record.pid, generation=generation.number, how=describeExit(status), served=record.served,
                why=f" ({record.shownReason})" if record.reason else "", **exitFields(status),
            )
            if self._crashed(generation, status):
                return
        self._reconcile(generation)

    def workerFailed(self, generation: Generation, pid: int, reason: str) -> None:
        if generation.everServed:
            self._log.error("Worker {pid} cannot serve: {reason}", pid=pid, reason=reason)
        else:
            self._generationFailed(generation, reason)

    def templateFailed(self, generation: Generation, reason: str) -> None:
        self._generationFailed(generation, reason)

    def sourceReported(self, generation: Generation, path: str) -> None:
        for sourceWatcher in self._sourceWatchers:
            sourceWatcher(path)

    def templateExited(self, generation: Generation, error: BaseException | None) -> None:
        if generation.stopping or self.stopping:
            return
        self._log.warn("The template of generation {number} exited unexpectedly: {error}",
                       number=generation.number, error=error)
        if not generation.everServed:
            self._generationFailed(generation, f"the template process of generation {generation.number} "
                                   f"exited at start-up ({error})")
            return
        # Its workers cannot be replaced any more: drain them and start afresh.
        generation.stop()
        self.startGeneration()

    def generationEnded(self, generation: Generation) -> None:
        self.generations.remove(generation)
        self._healthy(generation)
        self._failures.pop(generation, None)
        self._announced.discard(generation)
        self._log.info("Generation {number} has ended", number=generation.number)

    # Decisions.

    def _announce(self, generation: Generation) -> None:
        """
        All the workers of C{generation} serve: the generations before it
        drain, and the observers hear that the server serves.
        """
        self._announced.add(generation)
        self._log.info("Generation {number} serving with {count} workers",
                       number=generation.number, count=self.workerCount)
        for older in self._running():
            if older.number < generation.number:
                self._log.info("Draining generation {number}", number=older.number)
                older.stop()
        for observer in self.observers:
            observer.serving(generation)

    def _crashed(self, generation: Generation, status: int) -> bool:
        """
        Count a worker of C{generation} that died; whether that was one boot
        failure too many and the generation is given up.
        """
        failures = self._failures[generation] = self._failures.get(generation, 0) + 1
        if generation.everServed or failures < MAX_BOOT_FAILURES:
            return False
        self._generationFailed(generation, f"workers of generation {generation.number} "
                               f"die at start-up ({describeExit(status)})")
        return True

    def _healthy(self, generation: Generation) -> None:
        """
        A worker of C{generation} ended as it should: crashes before it do
        not delay its successors.
        """
        self._failures[generation] = 0
        call = self._respawns.pop(generation, None)
        if call is not None:
            call.cancel()

    def _generationFailed(self, generation: Generation, reason: str) -> None:
        if generation.stopping:
            return
        generation.stop()
        others = [g for g in self._running() if g.everServed]
        if not others:
            self.fail(reason)
            return
        self._log.error(
            "Generation {number} failed, generation {old} keeps serving: {reason}",
            number=generation.number, old=others[-1].number, reason=reason,
        )
        # A reload has ended, if not as hoped: a supervisor waiting for it
        # must hear that the server serves.
        for observer in self.observers:
            observer.serving(others[-1])

    # Actions.

    def startGeneration(self) -> Generation:
        self._generationNumber += 1
        generation = Generation(self._generationNumber, self, self.reactor)
        self._log.info("Generation {number} starting", number=generation.number)
        self.generations.append(generation)
        # Only the first: a reload must load new code.
        generation.start(self.config, self.sockets, fork=generation.number == 1 and canFork(self.reactor))
        self._reconcile(generation)
        return generation

    def _running(self) -> list[Generation]:
        return [g for g in self.generations if not g.stopping]

    def _reconcileAll(self) -> None:
        for generation in self._running():
            self._reconcile(generation)

    def _reconcile(self, generation: Generation) -> None:
        """
        Keep the generation at its size: wake spares to take the place of
        workers that left, fork what is still missing, and fork new spares,
        after the backoff that recent crashes call for.
        """
        if self.stopping or generation.stopping or generation in self._respawns:
            return
        missing = self.workerCount - generation.active()
        spares = sorted(generation.spares(), key=lambda w: w.state is not WorkerState.SERVING)
        for record in spares[:max(0, missing)]:
            generation.activate(record)
            missing -= 1
        # A spare for every worker close to its limit too, so that even
        # workers retiring together are each succeeded by a booted one.
        wantedSpares = self.config.spareWorkers and self.config.spareWorkers + generation.nearing()
        missingSpares = wantedSpares - len(generation.spares()) - generation.pendingSpares
        if missing <= 0 and missingSpares <= 0:
            return
        delay = backoff(self._failures.get(generation, 0))
        if delay:
            self._log.info("Waiting {delay:.1f} s before replacing a crashed worker", delay=delay)
            self._respawns[generation] = self.reactor.callLater(delay, self._respawnDue, generation)
            return
        for _ in range(missing):
            generation.spawn()
        for _ in range(missingSpares):
            generation.spawn(spare=True)

    def _respawnDue(self, generation: Generation) -> None:
        # After a crash, one worker at a time until one exits cleanly.
        del self._respawns[generation]
        if not (self.stopping or generation.stopping) and generation.active() < self.workerCount:
            generation.spawn()
        self._reconcile(generation)


def _exitWith(code: int) -> None:
    """
    Make the process exit with C{code} once twistd has cleaned up (its pid
    file, its logs): twistd itself always exits 0 after its reactor stops.
    """

    def exit() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    atexit.register(exit)
