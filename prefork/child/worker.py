"""
A worker: one process, forked by the template, that serves the application
until it has served its limit of requests or is told to stop.

Its life is starting, serving, draining, exited.  Draining stops accepting at
once, closes idle keep-alive connections, answers every request already
accepted (with C{Connection: close}), waits for the exit guard, and exits.
At the graceful timeout it abandons what is left, naming each request it
abandons (method and path) in its log: it aborts the connections, gives the
application's threads L{THREAD_GRACE} more, and exits without those that are
still busy (see L{prefork.child.boot}, which also exits the process at
L{EXIT_GRACE} after the deadline, whatever holds it).
"""

from __future__ import annotations

import os
import random
import signal
import socket
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from prefork.child.accept import FairTCPPort, FairUNIXPort, adoptFairPort
from prefork.child.exitguard import ExitGuard, install
from prefork.child.heartbeat import Heartbeat
from prefork.config import ServerConfig
from prefork.hooks import NO_HOOKS, Hooks, IWorker
from prefork.memory import MemoryUsage, memoryUsage, residentBytes
from prefork.messages import ACTIVATE_SIGNAL, Event, ExitReason, Message, printablePath, send
from prefork.proctitle import setTitle, workerTitle
from prefork.web.accesslog import COMBINED, AccessLog
from prefork.web.proxies import TrustedProxies
from prefork.web.proxyprotocol import ProxyHeaderFactory
from prefork.web.requesthooks import RequestHooks
from prefork.web.resourcesite import ResourceSite
from prefork.web.site import WorkerSite
from prefork.web.threadpool import RequestThreads
from prefork.web.wsgi import WorkerWSGIResource

if TYPE_CHECKING:
    from twisted.web.resource import IResource

    from prefork.child.appload import Served
    from prefork.web.wsgi import WSGIApplication

#: A listening socket handed down by the master: its descriptor and family.
Listener = tuple[int, socket.AddressFamily]

#: How often a worker tells the master it is alive, in seconds.
HEARTBEAT_INTERVAL = 1.0
#: How long a quick stop lets requests in flight finish, in seconds.
QUICK_STOP_TIMEOUT = 1.0
#: How long a gracefully draining worker leaves its idle keep-alive
#: connections open, in seconds.  A busy client's next request is usually
#: already on its way: answered with Connection: close, it succeeds, where
#: closing the connection under it would fail it (bench/ counted thousands of
#: such errors per run with recycling at 100 requests).
IDLE_GRACE = 0.5
#: How long after a drain's deadline the application's threads have to
#: finish before the worker exits without them, in seconds.
THREAD_GRACE = 0.5
#: How long after a drain's deadline a worker exits whatever holds it (a
#: thread, a hook, the reactor's shutdown), in seconds: less than the second
#: the master allows beyond --graceful-timeout before it kills.
EXIT_GRACE = 0.75

_log = Logger()


def drawLimit(config: ServerConfig) -> int:
    """
    This worker's request limit: C{maxRequests}, or a number drawn uniformly
    from C{[minRequests, maxRequests]} when C{minRequests} is given.
    """
    if config.minRequests is None or config.maxRequests == 0:
        return config.maxRequests
    return random.randint(config.minRequests, config.maxRequests)


def successorPoint(limit: int) -> int:
    """
    After how many requests a worker with this limit asks for its successor:
    a fifth of its life before the limit, so that the successor has booted
    by the time the worker stops accepting (0: never).
    """
    if limit < 2:
        return 0
    return limit - max(1, limit // 5)


def describeRequest(request: Any) -> str:
    """
    A request as its method and path, for a log line; a request whose head
    has not arrived yet says so.
    """
    method, path = getattr(request, "method", None), getattr(request, "path", None)
    if not isinstance(method, bytes) or not isinstance(path, bytes):
        return "(a request not read yet)"
    return f"{printablePath(method, 20)} {printablePath(path)}"


@implementer(IWorker)
class WorkerView:
    """
    A worker as the hooks see it, read as they call.
    """

    def __init__(self, config: ServerConfig, generation: int) -> None:
        self.pid = os.getpid()
        self.generation = generation
        self.config = config
        self.limit = 0
        self.reason = ""
        self.status = None
        self.site: WorkerSite | ResourceSite | None = None

    @property
    def served(self) -> int:
        return self.site.served if self.site is not None else 0


class Worker:
    """
    The life of one worker process, in its own reactor.

    @ivar bootFailed: Whether C{post_worker_init} raised, so that the worker
        exits as one that could not boot.
    """

    def __init__(
        self,
        reactor: Any,
        config: ServerConfig,
        generation: int,
        application: Served,
        listeners: Sequence[Listener],
        spare: bool = False,
        hooks: Hooks = NO_HOOKS,
        view: WorkerView | None = None,
        connectionCreators: Sequence[Any] = (),
    ) -> None:
        """
        @param connectionCreators: For each listener, what makes its TLS
            connections, or L{None} for plain HTTP.
        """
        self.reactor = reactor
        self.spare = spare
        self.hooks = hooks
        self.view = view if view is not None else WorkerView(config, generation)
        self.bootFailed = False
        self.config = config
        self.generation = generation
        self.pid = os.getpid()
        self.parentPid = os.getppid()
        self.limit = drawLimit(config)
        self.guard = install(ExitGuard(reactor))
        wsgi = config.resource is None
        self.threadpool = RequestThreads(config.threads, "prefork-wsgi") if config.threads and wsgi else None
        self.trusted = TrustedProxies(config.forwardedAllowIps)
        self.accessLog = None
        if config.accessLog is not None:
            self.accessLog = AccessLog(config.accessLog, config.accessLogFormat or COMBINED, generation, reactor)
        self.site = self._site(cast("WSGIApplication", application)) if wsgi else self._resourceSite(application)
        self.view.limit = self.limit
        self.view.site = self.site
        self.heartbeat = Heartbeat(self.pid, self.site)
        self._listeners = listeners
        self._creators = connectionCreators
        self._ports: list[FairTCPPort | FairUNIXPort] = []
        self._beating = LoopingCall(self._beat)
        self._deadline: IDelayedCall | None = None
        #: When, in the reactor's seconds, a drain must be over.
        self.exitBy: float | None = None
        self._idleClose: IDelayedCall | None = None
        self.draining = False

    def _site(self, application: WSGIApplication) -> WorkerSite:
        config, about = self.config, {"pid": self.pid, "generation": self.generation, "limit": self.limit}
        resource = WorkerWSGIResource(
            self.reactor,
            self.threadpool,
            application,
            {"prefork.exit_guard": self.guard, "prefork.worker": about},
            scriptName=config.scriptName,
            trustedProxies=self.trusted,
            displayTracebacks=config.displayTracebacks,
            requestHooks=RequestHooks.of(
                self.hooks.bound("pre_request", self.view), self.hooks.bound("post_request", self.view)
            ),
        )
        return WorkerSite(
            resource,
            self.limit,
            lambda: self.drain(ExitReason.LIMIT),
            self.accessLog,
            limits=config.requestLimits(),
            continueOnRead=self.threadpool is not None,
            nearLimit=successorPoint(self.limit),
            nearingLimit=self._askForSuccessor,
            changed=lambda: self.heartbeat.changed(),
        )

    def _resourceSite(self, resource: Served) -> ResourceSite:
        # Twisted's own site, run in the reactor thread: no pool for it.
        return ResourceSite(
            cast("IResource", resource),
            self.limit,
            lambda: self.drain(ExitReason.LIMIT),
            self.accessLog,
            limits=self.config.requestLimits(),
            trusted=self.trusted,
            reactor=self.reactor,
            nearLimit=successorPoint(self.limit),
            nearingLimit=self._askForSuccessor,
            changed=lambda: self.heartbeat.changed(),
            displayTracebacks=self.config.displayTracebacks,
        )

    def start(self) -> None:
        """
        Adopt the listening sockets and start serving once the reactor runs.
        """
        for index, (fd, family) in enumerate(self._listeners):
            port = adoptFairPort(self.reactor, fd, family, self._factory(index))
            # The port works on a copy; keeping the original would keep the
            # socket open (and connectable) after this worker stops accepting.
            os.close(fd)
            if self.spare:
                port.stopReading()
            self._ports.append(port)
        if self.threadpool is not None:
            self.threadpool.start()
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stopAccepting)
        self.reactor.callWhenRunning(self._running)

    def _factory(self, index: int) -> IProtocolFactory:
        """
        What serves the connections of listener C{index}: the site, behind
        TLS on a TLS listener, behind a PROXY protocol header when the
        server expects one (it comes first on the wire).
        """
        factory: IProtocolFactory = self.site
        creator = self._creators[index] if index < len(self._creators) else None
        if creator is not None:
            # Not imported at the top: it needs pyOpenSSL, which a server
            # without TLS listeners may not have.
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(creator, False, factory)
        if self.config.proxyProtocol:
            factory = ProxyHeaderFactory(factory, self.trusted, self.reactor)
        return factory

    def _running(self) -> None:
        try:
            self.hooks.call("post_worker_init", self.view)
        except BaseException:
            _log.failure("Hook post_worker_init raised: this worker cannot serve")
            self.bootFailed = True
            self._stopAccepting()
            self.reactor.stop()
            return
        # The reactor installed its own handlers as it started; ours replace
        # them, so that TERM drains instead of dropping connections.
        for signum, handler in [
            (signal.SIGTERM, lambda: self.drain(ExitReason.STOP)),
            (signal.SIGINT, self._interrupted),
            (signal.SIGQUIT, self._interrupted),
            (signal.SIGUSR1, self.reopenLogs),
            (ACTIVATE_SIGNAL, self.activate),
        ]:
            signal.signal(signum, self._inReactor(handler))
        send(Message(Event.READY, self.pid, (str(self.limit), *(("spare",) if self.spare else ()))))
        # The first full beat a second from now: READY says the worker is
        # alive, and measuring its unique memory (a walk of its page tables)
        # would cost a short life as much as its boot.  Until then its
        # reports carry the resident size, which costs a read.
        self.heartbeat.memory = MemoryUsage(rss=residentBytes())
        self.heartbeat.beat()
        self._beating.start(HEARTBEAT_INTERVAL, now=False)

    def _inReactor(self, handler: Callable[[], object]) -> Callable[[int, FrameType | None], None]:
        """
        A signal handler that runs C{handler} in the reactor, outside the
        signal's context.
        """
        return lambda signum, frame: self.reactor.callFromThread(handler)

    def _interrupted(self) -> None:
        self.hooks.callLogged("worker_int", self.view)
        self.drain(ExitReason.QUICK, QUICK_STOP_TIMEOUT)

    def _askForSuccessor(self) -> None:
        send(Message(Event.NEARING, self.pid))

    def activate(self) -> None:
        """
        Start accepting: a spare takes the place of a worker that retired.
        """
        if not self.spare or self.draining:
            return
        self.spare = False
        for port in self._ports:
            port.startReading()
        send(Message(Event.ACTIVE, self.pid))

    def _beat(self) -> None:
        self.heartbeat.memory = memory = memoryUsage()
        alive = self.heartbeat.beat()
        setTitle(workerTitle(self.config.served, self.generation, self.site.served, self.limit, self.spare))
        if not alive or os.getppid() != self.parentPid:
            # Nobody supervises it any more: it answers what it accepted,
            # within the graceful timeout, and leaves.
            self.drain(ExitReason.ORPHANED)
        elif not self.draining and self._overMemoryLimit(memory):
            self.drain(ExitReason.MEMORY)

    def _overMemoryLimit(self, memory: MemoryUsage) -> bool:
        """
        Whether the worker uses more memory than C{--max-rss} or
        C{--max-uss} allow; if so, log which limit it passed.
        """
        config = self.config
        if config.maxRss and memory.rss > config.maxRss * 2**20:
            _log.info(
                "Using {rss} MB, more than --max-rss {limit} MB: retiring", rss=memory.rss >> 20, limit=config.maxRss
            )
            return True
        if config.maxUss and memory.uss > config.maxUss * 2**20:
            _log.info(
                "Using {uss} MB of unique memory, more than --max-uss {limit} MB: retiring",
                uss=memory.uss >> 20, limit=config.maxUss,
            )
            return True
        return False

    def reopenLogs(self) -> None:
        if self.accessLog is not None:
            self.accessLog.reopen()
            _log.info("Reopened the access log {path}", path=self.accessLog.path)

    def drain(self, reason: ExitReason, timeout: float | None = None) -> None:
        """
        Stop accepting, finish what was accepted and the exit guard, exit.
        Idle keep-alive connections are closed after L{IDLE_GRACE}, or at
        once for a quick drain.

        @param timeout: The longest to wait, in seconds; the graceful timeout
            when L{None} (a graceful drain), else a quick one.  A later,
            shorter timeout shortens the wait.
        """
        quick = timeout is not None
        timeout = self.config.gracefulTimeout if timeout is None else timeout
        if self.draining:
            if self.exitBy is not None and self.exitBy > self.reactor.seconds() + timeout:
                self.exitBy = self.reactor.seconds() + timeout
                if self._deadline is not None:
                    self._deadline.reset(timeout)
            if quick:
                self.site.closeIdleConnections()
            return
        self.draining = True
        self.view.reason = reason.value
        self.site.closing = True
        # A worker retiring at its limit leaves waiting connections to the
        # others; when the whole server stops, nobody else will take them.
        self._stopAccepting(takePending=reason is not ExitReason.LIMIT)
        send(Message(Event.DRAINING, self.pid, (str(self.site.served), reason.word)))
        if quick:
            self.site.closeIdleConnections()
        else:
            self._idleClose = self.reactor.callLater(IDLE_GRACE, self.site.closeIdleConnections)
        self.exitBy = self.reactor.seconds() + timeout
        self._deadline = self.reactor.callLater(timeout, self._giveUp)
        finished: Deferred[None] = self.site.whenEmpty()
        finished.addCallback(lambda _: self.guard.wait())
        finished.addCallback(lambda _: self._stop())

    def _stopAccepting(self, takePending: bool = False) -> None:
        """
        Stop accepting connections; with C{takePending}, first accept those
        the kernel has already completed, so that they are answered instead
        of reset when the socket closes.
        """
        for port in self._ports:
            port.stopReading()
            if takePending:
                port.acceptsPerWakeup = 2**16  # all of them, at once
                port.doRead()
            # Not stopListening(): that shuts down the socket, in every
            # process that shares it, and unlinks a UNIX socket's path.  A
            # connection completed between the last accept() and this close
            # is reset by the kernel: keep the two as close as can be.
            port.socket.close()
        self._ports = []

    def timeLeft(self) -> float:
        """
        How long until the drain's deadline, in seconds: 0 once it has
        passed, or when the worker is not draining.
        """
        if self.exitBy is None:
            return 0.0
        left: float = self.exitBy - self.reactor.seconds()
        return max(0.0, left)

    def inFlight(self) -> list[str]:
        """
        The requests admitted and not yet answered, as method and path.
        """
        return [describeRequest(request) for request in self.site.requestsInFlight()]

    def _giveUp(self) -> None:
        self._deadline = None
        requests = self.inFlight()
        _log.warn(
            "Drain timed out with {connections} connections open and {guards} exit guards pending; "
            "abandoning {count} requests: {requests}",
            connections=len(self.site.channels),
            guards=self.guard.pending,
            count=len(requests),
            requests=", ".join(requests) or "none",
        )
        self.site.abortConnections()
        self._stop()

    def _stop(self) -> None:
        if self._idleClose is not None and self._idleClose.active():
            self._idleClose.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._beating.running:
            self._beating.stop()
            self.heartbeat.stop()
        if self.reactor.running:
            self.reactor.stop()

    def stopThreads(self) -> None:
        """
        Stop the application's threads, waiting for them until the drain's
        deadline and L{THREAD_GRACE} more; name what they abandon.
        """
        if self.threadpool is None:
            return
        abandoned = self.threadpool.stop(self.timeLeft() + THREAD_GRACE)
        if abandoned:
            _log.warn(
                "Exiting with {count} calls of the application unfinished: {abandoned}",
                count=len(abandoned), abandoned=", ".join(abandoned),
            )
