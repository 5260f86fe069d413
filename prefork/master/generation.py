"""
A generation: one template process and the workers it forks, all running the
same import of the application.  A reload starts a new generation beside the
old one.

L{Generation} is the master's view of it: it starts the template, sends it
commands, keeps the table of workers up to date from what the template and
the workers report, and tells its L{IGenerationObserver} what happened.  What
to do about it is the observer's decision.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from prefork.config import ServerConfig
from prefork.lineframing import MAX_LINE, Line, LineFramer
from prefork.master.forkedtemplate import forkTemplate
from prefork.master.interfaces import IGenerationObserver, IGenerationState
from prefork.master.outputrelay import OutputRelay
from prefork.master.sockets import ListeningSocket
from prefork.master.workers import WorkerRecord, WorkerState
from prefork.messages import (
    ACTIVATE_SIGNAL,
    FIRST_LISTEN_FD,
    STATUS_FD,
    Command,
    Event,
    ExitReason,
    Message,
    TemplateSetup,
)

#: Environment variables that hand sockets to this server (and systemd's
#: notification socket and watchdog, which speak for the master alone); they
#: are not for the application's own children.
SOCKET_ENVIRONMENT = (
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "SERVER_STARTER_PORT", "EINHORN_FD_COUNT", "EINHORN_FDS",
    "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
)


@implementer(IGenerationState)
class Generation(ProcessProtocol):
    """
    The template process of one generation and its workers.

    @ivar number: 1 for the first generation, one more for each reload.
    @ivar workers: The live workers, by pid.
    @ivar pendingSpawns: Workers asked for and not yet reported born.
    @ivar pendingSpares: Spare workers asked for and not yet reported born.
    @ivar everServed: Whether any worker of this generation became ready.
    """

    _log = Logger()

    def __init__(self, number: int, observer: IGenerationObserver, reactor: Any) -> None:
        self.number = number
        self.observer = observer
        self.reactor = reactor
        self.workers: dict[int, WorkerRecord] = {}
        self.pendingSpawns = 0
        self.pendingSpares = 0
        self.everServed = False
        self.stopping = False
        self.ended: Deferred[None] = Deferred()
        #: The lines of each pipe the template and its workers write.
        self._framers: dict[int, LineFramer] = {}
        self._output = OutputRelay(self._log, self._pausePipe, self._resumePipe, reactor.callLater)

    def start(self, config: ServerConfig, sockets: list[ListeningSocket], fork: bool = False) -> None:
        """
        Start the template process, handing it the listening sockets, and
        its configuration as its first command.

        @param fork: Fork the master instead of starting a new Python (see
            L{prefork.master.forkedtemplate}); the fork has the configuration
            already.
        """
        setup = TemplateSetup(self.number, len(sockets), config)
        args = setup.commandLine(sys.executable)
        childFDs: dict[int, int | str] = {0: "w", 1: 1, 2: "r", STATUS_FD: "r"}
        for i, listening in enumerate(sockets):
            childFDs[FIRST_LISTEN_FD + i] = listening.fileno()
        environment = {
            k: v for k, v in os.environ.items() if k not in SOCKET_ENVIRONMENT and not k.startswith("EINHORN_FD_")
        }
        if fork:
            forkTemplate(self.reactor, self, args, environment, childFDs, setup)
        else:
            self.reactor.spawnProcess(self, sys.executable, args, env=environment, path=os.getcwd(), childFDs=childFDs)
            self._send(setup.encode())

    @property
    def pid(self) -> int | None:
        return self.transport.pid if self.transport is not None else None

    def command(self, command: Command, *args: str) -> bool:
        """
        Send the template a command; whether it could be sent.
        """
        return self._send(" ".join([command.value, *args]).encode("ascii") + b"\n")

    def _send(self, line: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.pid is None:
            return False
        try:
            transport.writeToChild(0, line)
        except KeyError:
            # Its standard input has closed: the template is exiting, and
            # its exit is yet to be reported.
            return False
        return True

    # Actions the master asks for.

    def spawn(self, spare: bool = False) -> None:
        """
        Ask for one more worker: a spare boots but accepts nothing until it
        is activated.
        """
        if spare:
            self.pendingSpares += 1
            self.command(Command.SPAWN_SPARE)
        else:
            self.pendingSpawns += 1
            self.command(Command.SPAWN)

    def activate(self, record: WorkerRecord) -> None:
        """
        Make a spare count as a worker; it starts accepting as soon as it
        has booted.
        """
        record.activate()
        if record.state is WorkerState.SERVING:
            self.signal(record.pid, ACTIVATE_SIGNAL)

    def drain(self, record: WorkerRecord, reason: ExitReason) -> None:
        """
        Have one worker finish what it has and exit, for C{reason}: the
        master's decision, whatever the worker then reports.
        """
        record.drain(reason)
        self.signal(record.pid, signal.SIGTERM)

    def abort(self, record: WorkerRecord) -> None:
        """
        Abort a worker that has been silent too long, so that it prints
        where it was stuck.
        """
        record.abort()
        self.signal(record.pid, signal.SIGABRT)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """
        Fork no more, and tell every worker to stop with C{signum}.
        """
        self.stopping = True
        # The template closes its listening sockets before it passes the
        # signal on, so that the last process to hold them is a worker that
        # accepts what is pending as it closes them.
        if self.command(Command.STOP, str(int(signum))):
            return
        for pid in list(self.workers):
            self.signal(pid, signum)

    def signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """
        Kill the template and every worker at once.
        """
        for pid in list(self.workers):
            self.signal(pid, signal.SIGKILL)
        if self.pid is not None:
            self.signal(self.pid, signal.SIGKILL)

    # Counting the workers.

    def active(self) -> int:
        """
        How many workers count toward the generation's size: those booting
        or serving, and those asked for.
        """
        counted = sum(1 for w in self.workers.values() if w.counted and not w.spare)
        return counted + self.pendingSpawns

    def spares(self) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.counted and w.spare]

    def nearing(self) -> int:
        """
        How many accepting workers are close to their limit.
        """
        return sum(1 for w in self.workers.values() if w.nearing and w.accepting)

    def serving(self) -> int:
        return sum(1 for w in self.workers.values() if w.accepting)

    def silent(self, timeout: float) -> list[WorkerRecord]:
        """
        The booted workers not heard from for C{timeout} seconds and not
        aborted yet.
        """
        now = self.reactor.seconds()
        return [
            w for w in self.workers.values()
            if w.state is not WorkerState.BOOTING and not w.timedOut and w.silentFor(now) >= timeout
        ]

    def workersByAge(self) -> list[WorkerRecord]:
        return sorted(self.workers.values(), key=lambda record: record.born)

    def record(self, pid: int, spare: bool = False) -> WorkerRecord:
        """
        The record of worker C{pid}, made on the first word from or about it
        (a worker may report before its template reports its birth).
        """
        record = self.workers.get(pid)
        if record is None:
            now = self.reactor.seconds()
            record = self.workers[pid] = WorkerRecord(pid, spare=spare, born=now, lastHeard=now)
            if spare:
                self.pendingSpares = max(0, self.pendingSpares - 1)
            else:
                self.pendingSpawns = max(0, self.pendingSpawns - 1)
        return record

    # Reports in.

    def messageReceived(self, message: Message) -> None:
        """
        Bring the table of workers up to date with one status line, and
        tell the observer what it means.
        """
        if message.event is Event.FATAL and message.pid == self.pid:
            self.observer.templateFailed(self, message.args[0])
            return
        if message.event is Event.SOURCE:
            self.observer.sourceReported(self, message.args[0])
            return
        record = self.record(message.pid, spare="spare" in message.args)
        record.heard(self.reactor.seconds())
        if message.event is Event.READY:
            record.ready(int(message.args[0]))
            self.everServed = True
            if "spare" in message.args and not record.spare and record.state is WorkerState.SERVING:
                # Activated while it booted: it can be woken now.
                self.signal(record.pid, ACTIVATE_SIGNAL)
            self.observer.workerReady(self, record)
        elif message.event is Event.NEARING:
            record.nearLimit()
            self.observer.workerNearing(self, record)
        elif message.event is Event.BEAT:
            record.beat(message.report())
        elif message.event is Event.DRAINING:
            record.draining(ExitReason.fromWord(message.args[1]), served=int(message.args[0]))
            self.observer.workerDraining(self, record)
        elif message.event is Event.EXITED:
            del self.workers[message.pid]
            status = int(message.args[0])
            record.exited(status)
            self.observer.workerExited(self, record, status)
        elif message.event is Event.FATAL:
            self.observer.workerFailed(self, message.pid, message.args[0])

    # ProcessProtocol

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        framer = self._framers.get(childFD)
        if framer is None:
            framer = self._framers[childFD] = LineFramer()
        if childFD == STATUS_FD:
            self._statusLines(framer.feed(data))
        else:
            self._output.received(childFD, len(data), framer.feed(data))

    def _statusLines(self, lines: list[Line]) -> None:
        for line in lines:
            self._statusLine(line)

    def _pausePipe(self, childFD: int) -> None:
        pipe = self._pipe(childFD)
        if pipe is not None:
            pipe.stopReading()

    def _resumePipe(self, childFD: int) -> None:
        pipe = self._pipe(childFD)
        if pipe is not None and not pipe.disconnected:
            pipe.startReading()

    def _pipe(self, childFD: int) -> Any:
        pipes = getattr(self.transport, "pipes", {})
        return pipes.get(childFD)

    def _statusLine(self, line: Line) -> None:
        if not line.whole:
            self._log.warn(
                "Garbled status line from generation {number}: a piece of a line over {cap} bytes: {line!r}",
                number=self.number, cap=MAX_LINE, line=line.data,
            )
            return
        try:
            message = Message.decode(line.data)
        except (ValueError, IndexError):
            self._log.warn("Garbled status line from generation {number}: {line!r}", number=self.number, line=line.data)
            return
        self.messageReceived(message)

    def processExited(self, reason: Failure) -> None:
        self.observer.templateExited(self, None if reason.check(ProcessDone) else reason.value)

    def processEnded(self, reason: Failure) -> None:
        # The template and every worker (which share its pipes) are gone.
        for fd, framer in self._framers.items():
            if fd == STATUS_FD:
                self._statusLines(framer.flush())
            else:
                self._output.flush(framer.flush())
        self.observer.generationEnded(self)
        self.ended.callback(None)
