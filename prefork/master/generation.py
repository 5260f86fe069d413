"""
A generation: one template process and the workers it forks, all running the
same import of the application.  A reload starts a new generation beside the
old one.

L{Generation} is the master's view of it: it starts the template, sends it
commands, parses what the template and the workers report, and keeps the
table of workers.  What to do about those reports is the master's decision.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from prefork.config import ServerConfig
from prefork.master.forkedtemplate import forkTemplate
from prefork.messages import ACTIVATE_SIGNAL, FIRST_LISTEN_FD, STATUS_FD, Command, Message, WorkerReport
from prefork.master.sockets import ListeningSocket

if TYPE_CHECKING:
    from prefork.master.supervisor import Master

#: Environment variables that hand sockets to this server (and systemd's
#: notification socket, which speaks for the master alone); they are not for
#: the application's own children.
SOCKET_ENVIRONMENT = (
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "SERVER_STARTER_PORT", "EINHORN_FD_COUNT", "EINHORN_FDS", "NOTIFY_SOCKET",
)


class WorkerState(Enum):
    BOOTING = "booting"
    SERVING = "serving"
    DRAINING = "draining"


@dataclass
class WorkerRecord:
    """
    What the master knows of one worker.
    """

    pid: int
    spare: bool = False
    state: WorkerState = WorkerState.BOOTING
    limit: int = 0
    served: int = 0
    born: float = field(default_factory=time.monotonic)
    lastHeard: float = field(default_factory=time.monotonic)
    reason: str = ""
    #: Close to its request limit: a spare is kept ready to succeed it.
    nearing: bool = False
    report: WorkerReport = field(default_factory=WorkerReport)

    @property
    def accepting(self) -> bool:
        return self.state is WorkerState.SERVING and not self.spare

    @property
    def counted(self) -> bool:
        """
        Whether it counts toward the generation's size (or its spares).
        """
        return self.state is not WorkerState.DRAINING


class Generation(ProcessProtocol):
    """
    The template process of one generation and its workers.

    @ivar number: 1 for the first generation, one more for each reload.
    @ivar workers: The live workers, by pid.
    @ivar pendingSpawns: Workers asked for and not yet reported born.
    @ivar pendingSpares: Spare workers asked for and not yet reported born.
    @ivar everServed: Whether any worker of this generation became ready.
    @ivar announced: Whether the generation has had all its workers ready.
    """

    _log = Logger()

    def __init__(self, master: Master, number: int) -> None:
        self.master = master
        self.number = number
        self.workers: dict[int, WorkerRecord] = {}
        self.pendingSpawns = 0
        self.pendingSpares = 0
        self.everServed = False
        self.announced = False
        self.stopping = False
        self.ended: Deferred[None] = Deferred()
        self._buffers: dict[int, bytes] = {}

    def start(self, reactor: Any, config: ServerConfig, sockets: list[ListeningSocket], fork: bool = False) -> None:
        """
        Start the template process, handing it the listening sockets.

        @param fork: Fork the master instead of starting a new Python (see
            L{prefork.master.forkedtemplate}).
        """
        argument = json.dumps({"config": config.toJSON(), "sockets": len(sockets), "generation": self.number})
        args = [sys.executable, "-m", "prefork.child.template", argument]
        childFDs: dict[int, int | str] = {0: "w", 1: 1, 2: "r", STATUS_FD: "r"}
        for i, listening in enumerate(sockets):
            childFDs[FIRST_LISTEN_FD + i] = listening.fileno()
        environment = {k: v for k, v in os.environ.items() if k not in SOCKET_ENVIRONMENT and not k.startswith("EINHORN_FD_")}
        if fork:
            forkTemplate(reactor, self, args, environment, childFDs)
        else:
            reactor.spawnProcess(self, sys.executable, args, env=environment, path=os.getcwd(), childFDs=childFDs)

    @property
    def pid(self) -> int | None:
        return self.transport.pid if self.transport is not None else None

    @property
    def templateRunning(self) -> bool:
        return self.transport is not None and self.transport.pid is not None

    def command(self, command: Command, *args: str) -> bool:
        """
        Send the template a command; whether it could be sent.
        """
        if not self.templateRunning:
            return False
        line = " ".join([command.value, *args])
        try:
            self.transport.writeToChild(0, line.encode("ascii") + b"\n")
        except KeyError:
            # Its standard input has closed: the template is exiting, and
            # its exit is yet to be reported.
            return False
        return True

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
        record.spare = False
        if record.state is WorkerState.SERVING:
            self.signal(record.pid, ACTIVATE_SIGNAL)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """
        Fork no more, and tell every worker to stop with C{signum}.
        """
        self.stopping = True
        # The template closes its listening sockets before it passes the
        # signal on, so that the last process to hold them is a worker that
        # accepts what is pending as it closes them.
        if self.command(Command.STOP, str(signum)):
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

    def record(self, pid: int, spare: bool = False) -> WorkerRecord:
        """
        The record of worker C{pid}, made on the first word from or about it
        (a worker may report before its template reports its birth).
        """
        record = self.workers.get(pid)
        if record is None:
            record = self.workers[pid] = WorkerRecord(pid, spare=spare)
            if spare:
                self.pendingSpares = max(0, self.pendingSpares - 1)
            else:
                self.pendingSpawns = max(0, self.pendingSpawns - 1)
        return record

    # ProcessProtocol

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, self._buffers[childFD] = (self._buffers.get(childFD, b"") + data).split(b"\n")
        for line in lines:
            if childFD == STATUS_FD:
                self._statusLine(line)
            else:
                self._log.info("{line}", line=line.decode("utf-8", "replace"))

    def _statusLine(self, line: bytes) -> None:
        try:
            message = Message.decode(line)
        except (ValueError, IndexError):
            self._log.warn("Garbled status line from generation {number}: {line!r}", number=self.number, line=line)
            return
        self.master.workerEvent(self, message)

    def processExited(self, reason: Failure) -> None:
        self.master.templateExited(self, None if reason.check(ProcessDone) else reason.value)

    def processEnded(self, reason: Failure) -> None:
        # The template and every worker (which share its pipes) are gone.
        for fd, rest in self._buffers.items():
            if rest:
                self.childDataReceived(fd, b"\n")
        self.master.generationEnded(self)
        self.ended.callback(None)
