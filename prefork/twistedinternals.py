"""
The private names of Twisted's that twisted-prefork relies on, all in one
place, and the check that the installed Twisted is one they work with.

Twisted promises nothing about a name with a leading underscore; a release
may rename or reshape it without notice.  No other module of the project
touches one: each is reached through this module, which says next to it
what it is for and since which Twisted release it has the shape used here.
L{PRIVATE_NAMES} lists them all, and C{tests/test_twistedinternals.py}
checks every one against the installed Twisted, naming the name and the
release that changed it.

Some of the project's code copies the body of a function of Twisted's, or
relies on what happens inside one, where no name shows it: L{MIRRORS} lists
each with a digest of that function's source in every Twisted release it
was checked against, and the same test fails when the installed Twisted's
source differs from all of them, naming the code to re-check.

Importing this module checks the installed Twisted: one older than
L{MINIMUM_TWISTED}, or one that no longer has a name listed here, ends the
program with one line (L{UnsupportedTwisted}, a L{SystemExit}) instead of a
traceback from a process that dies later.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import twisted
from twisted.internet import tcp, unix
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.process import Process
from twisted.logger import FileLogObserver, ILogObserver, Logger, LogPublisher

from prefork import __version__

#: The oldest Twisted release the whole test suite passes on; setup.cfg's
#: C{install_requires} declares the same, and CI runs the suite on it.
#: Older releases fail the request path: 24.10 cannot serve over a UNIX
#: socket (its HTTPChannel sets TCP_NODELAY on one, which raises), 24.7
#: takes C{&} for no token character (in methods and field names), and
#: releases before it accept field names that are no tokens and answer
#: pipelined HTTP/1.0 requests out of order (CVE-2024-41671).
MINIMUM_TWISTED = (24, 11, 0)


class UnsupportedTwisted(SystemExit):
    """
    The installed Twisted cannot run this release: its message is the one
    line the user sees.
    """


@dataclass(frozen=True)
class PrivateName:
    """
    One private name of Twisted's and what the project relies on it for.

    @ivar owner: The module or class that has it.
    @ivar name: Its name there (name-mangled, if it is).
    @ivar use: What the project uses it for.
    @ivar since: The Twisted release since which it has the shape used
        (10.0.0 stands for that release or an older one).
    @ivar parameters: For a method or function, the names of the
        parameters the project passes or receives (C{self} and C{cls}
        left out); L{None} for an attribute.
    @ivar onInstance: The attribute is set on each instance (by
        C{__init__} or while parsing), not on the class: only a live
        object shows it.
    """

    owner: Any
    name: str
    use: str
    since: str
    parameters: tuple[str, ...] | None = None
    onInstance: bool = False

    @property
    def qualifiedName(self) -> str:
        if isinstance(self.owner, type):
            return f"{self.owner.__module__}.{self.owner.__qualname__}.{self.name}"
        return f"{self.owner.__name__}.{self.name}"


@dataclass(frozen=True)
class Mirror:
    """
    Code of the project's that copies the body of one of Twisted's
    functions, or works because of what that function does inside.  No name
    changes when such a body does: a digest of its source tells.

    @ivar upstream: The function, as C{"module:Qualified.name"}.
    @ivar where: The project's code that mirrors it, as C{"path: name"}.
    @ivar recheck: What to re-check there when the function changes.
    @ivar takenFrom: The Twisted release that code was written from.
    @ivar digests: For each Twisted release it was checked against, the
        L{sourceDigest} of the function in that release.
    """

    upstream: str
    where: str
    recheck: str
    takenFrom: str
    digests: Mapping[str, str]


def upstreamFunction(mirror: Mirror) -> Callable[..., Any]:
    """
    The installed Twisted's function that C{mirror} mirrors, imported now
    (the modules some mirror, twistd's among them, are not ones every
    process needs).
    """
    moduleName, _, qualifiedName = mirror.upstream.partition(":")
    found: Any = importlib.import_module(moduleName)
    for part in qualifiedName.split("."):
        found = getattr(found, part)
    return found  # type: ignore[no-any-return]


def sourceDigest(function: Callable[..., Any]) -> str:
    """
    The SHA-256 of C{function}'s source with each run of white space made
    one space: a change of indentation or line breaks does not change it,
    one of code, comment or docstring does.
    """
    normalised = " ".join(inspect.getsource(function).split())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def twistedVersion() -> str:
    """
    The installed Twisted's version, as its users know it.
    """
    return str(twisted.__version__)


def isSupported(version: Any = None) -> bool:
    """
    Whether C{version} (an C{incremental} version; the installed Twisted's
    by default) is at least L{MINIMUM_TWISTED}.
    """
    version = twisted.version if version is None else version
    return (version.major, version.minor, version.micro) >= MINIMUM_TWISTED


def minimumVersion() -> str:
    return ".".join(map(str, MINIMUM_TWISTED))


def checkTwisted() -> None:
    """
    Refuse an installed Twisted this release cannot run on.

    @raise UnsupportedTwisted: It is too old, or lacks one of the names
        listed in L{PRIVATE_NAMES}.
    """
    if not isSupported():
        raise UnsupportedTwisted(
            f"twisted-prefork {__version__} needs Twisted >= {minimumVersion()} (found {twistedVersion()})"
        )
    for private in PRIVATE_NAMES:
        if not private.onInstance and not hasattr(private.owner, private.name):
            raise UnsupportedTwisted(
                f"twisted-prefork {__version__} does not support Twisted {twistedVersion()}: "
                f"it has no {private.qualifiedName}"
            )


# The worker's listening ports.


_Port = TypeVar("_Port", bound=tcp.Port)


def adoptListeningPort(
    portClass: type[_Port], reactor: Any, fd: int, family: socket.AddressFamily, factory: IProtocolFactory
) -> _Port:
    """
    What C{reactor.adoptStreamPort} does, but with a port of C{portClass}
    (a subclass of Twisted's TCP or UNIX port): listen with C{factory} on a
    copy of the listening socket C{fd}.  The port is not started: a UNIX
    port starts with L{startAdoptedUNIXPort}.
    """
    port: _Port
    if issubclass(portClass, unix.Port):
        port = portClass._fromListeningDescriptor(reactor, fd, factory)
    else:
        port = portClass._fromListeningDescriptor(reactor, fd, family, factory)
    return port


def startAdoptedUNIXPort(port: unix.Port) -> None:
    """
    Start a UNIX port made by L{adoptListeningPort}, as Twisted's
    C{unix.Port.startListening} does, less two things it does to a socket
    it did not bind: listening again, with its backlog of 50 (each worker
    would cut the queue C{--backlog} or systemd set), and setting the path's
    mode to the port's, 0666 by default (a socket made with C{mode=600}
    would be opened to everyone, and a worker running as C{--uid} may not
    change the mode of a socket root made).
    """
    started: Any = port
    spareDescriptorReserve().reserve()
    started.factory.doStart()
    adopted = started._preexistingSocket
    started._preexistingSocket = None
    started.connected = True
    started.socket = adopted
    started.fileno = adopted.fileno
    started.startReading()


def peerAddress(port: Any, peer: Any) -> Any:
    """
    The address a TCP or UNIX port gives a connection it accepted from
    C{peer} (as C{accept()} returned it).
    """
    return port._buildAddr(peer)


# A worker's event loop.


class LeanEPollReactor(EPollReactor):
    """
    Twisted's epoll reactor, less the logging context it sets up around
    each event: the prefix of the object being served, which only Twisted's
    legacy log calls read (no observer in a worker prints it), and which
    costs more than dispatching the event itself.
    """

    _log = Logger()
    #: How many events the current turn of the loop handles: how busy the
    #: worker is.
    eventsThisTurn = 0

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        # Python retries EINTR itself (PEP 475).
        events = self._poller.poll(timeout, len(self._selectables))
        self.eventsThisTurn = len(events)
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                # What connectionLost raises, which dispatch lets through.
                dispatch(selectable, fd, event)
            except Exception:
                self._log.failure("Unhandled error handling an event of {selectable}", selectable=selectable)

    doIteration = doPoll


# What a connection has buffered and not yet written.


def unwrittenBytes(transport: FileDescriptor) -> int:
    """
    How many bytes C{transport} holds that it has not handed to the kernel.
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


# Where twistd's text log observer writes.


def outputFileOf(observer: FileLogObserver) -> Any:
    """
    The file C{observer} writes its events to.
    """
    return observer._outFile


# The descriptor Twisted keeps to accept and drop connections past EMFILE.


def spareDescriptorReserve() -> Any:
    """
    What holds the spare descriptor of Twisted's TCP and UNIX ports, or
    L{None} in a Twisted without one.
    """
    return getattr(tcp, "_reservedFD", None)


def reserveSpareDescriptor() -> None:
    """
    Open the spare descriptor now, in the template, so that workers inherit
    it instead of opening their own as they boot.
    """
    spareDescriptorReserve().reserve()


def detachSpareDescriptor() -> object:
    """
    Forget the spare descriptor without closing it: in a child forked from
    the master, whose descriptor it was.  The next port opens a new one.

    @return: What held the descriptor, which the caller must keep alive:
        freeing it would close whatever now has that number.
    """
    reservation = spareDescriptorReserve()
    held = reservation._fileDescriptor
    reservation._fileDescriptor = None
    return held


# Logging in a process forked from the master.


def observersOf(publisher: LogPublisher) -> list[ILogObserver]:
    """
    The observers C{publisher} sends events to (it has no public way to
    list them).
    """
    return list(publisher._observers)


# The first template, forked from the master.


class InPlaceProcess(Process):
    """
    A child process that, once Twisted has set up its descriptors, runs
    L{becomeChild} in place of C{exec}ing a program.
    """

    def becomeChild(self, args: list[str], environment: dict[str, str]) -> NoReturn:
        """
        Run in the child: be the process C{args} and C{environment} describe.
        Must not return.
        """
        raise NotImplementedError

    def _trySpawnInsteadOfFork(
        self, path: str | None, uid: int | None, gid: int | None, executable: str, args: list[str],
        environment: dict[str, str], kwargs: dict[str, Any],
    ) -> bool:
        # posix_spawn() would exec.
        return False

    def _execChild(
        self, path: str | None, uid: int | None, gid: int | None, executable: str, args: list[str],
        environment: dict[str, str],
    ) -> NoReturn:
        self.becomeChild(args, environment)


def _names(owner: Any, since: str, use: str, *names: str, parameters: Sequence[str] | None = None,
           onInstance: bool = False) -> list[PrivateName]:
    return [
        PrivateName(owner, name, use, since, None if parameters is None else tuple(parameters), onInstance)
        for name in names
    ]


#: Every private name of Twisted's used above, with what for and since when.
PRIVATE_NAMES: tuple[PrivateName, ...] = tuple(
    _names(FileLogObserver, "15.2.0", "outputFileOf: worker output written to twistd's log file in batches",
           "_outFile", onInstance=True)
    + _names(FileDescriptor, "12.1.0", "unwrittenBytes: a connection writes at once when nothing waits before",
           "_tempDataLen", onInstance=True)
    + _names(tcp.Port, "12.1.0", "adoptListeningPort: our fair-accept TCP port on an inherited socket",
             "_fromListeningDescriptor", parameters=("reactor", "fd", "addressFamily", "factory"))
    + _names(unix.Port, "17.9.0", "adoptListeningPort: our fair-accept UNIX port on an inherited socket",
             "_fromListeningDescriptor", parameters=("reactor", "fd", "factory"))
    + _names(unix.Port, "17.9.0", "startAdoptedUNIXPort: the adopted socket a UNIX port starts on",
             "_preexistingSocket", onInstance=True)
    + _names(EPollReactor, "10.0.0", "LeanEPollReactor.doPoll: the poller and the descriptors it watches",
             "_poller", "_selectables", onInstance=True)
    + _names(EPollReactor, "10.0.0", "LeanEPollReactor.doPoll: dispatch one event as Twisted does",
             "_doReadOrWrite", parameters=("selectable", "fd", "event"))
    + _names(tcp.Port, "10.0.0", "peerAddress: the address of an accepted connection, as Twisted builds it",
             "_buildAddr", parameters=("address",))
    + _names(unix.Port, "10.0.0", "peerAddress: the address of an accepted UNIX connection",
             "_buildAddr", parameters=("name",))
    + _names(tcp, "18.7.0", "reserveSpareDescriptor, detachSpareDescriptor: the EMFILE reserve",
             "_reservedFD")
    # Its class is private too: found through the object, so that a
    # Twisted without it gets the one line about _reservedFD.
    + _names(type(spareDescriptorReserve()), "18.7.0", "detachSpareDescriptor: the reserve's descriptor",
             "_fileDescriptor", onInstance=True)
    + _names(LogPublisher, "15.2.0", "observersOf: drop the master's log observers in a forked template",
             "_observers", onInstance=True)
    + _names(Process, "13.1.0", "InPlaceProcess.becomeChild: run the template in the forked child",
             "_execChild", parameters=("path", "uid", "gid", "executable", "args", "environment"))
    + _names(Process, "23.8.0", "InPlaceProcess: never posix_spawn() the forked template",
             "_trySpawnInsteadOfFork", parameters=("path", "uid", "gid", "executable", "args", "environment",
                                                    "kwargs"))
)


#: Every function of Twisted's the project's code copies or relies on the
#: inside of, with the digests of its source in the releases checked (the
#: oldest supported and the newest at least).  A release whose source has
#: another digest fails the fence test; once its C{recheck} is done, add
#: the release and its digest here.
MIRRORS: tuple[Mirror, ...] = (
    Mirror(
        "twisted.internet.tcp:Port.doRead",
        "prefork/child/accept.py: _FewAccepts.doRead",
        "the accept loop copied from it (the IPv6 scope, buildProtocol, sessionno, the transport), the errors "
        "left to it, and numberAccepts, which _FewAccepts pins",
        "26.10.0",
        {
            "24.11.0": "bac4688cc5fd4465f2b7d94e7061d26239de4739c14ab9fa05bac845787c3b11",
            "26.10.0": "0f5e9c8bf87de8be268bdfcd1ccb9c3948b74d3f0f9e7a4aefefaaccd62eaa6f",
        },
    ),
    Mirror(
        "twisted.internet.abstract:FileDescriptor.write",
        "prefork/child/accept.py: _ImmediateWrites.write",
        "that a write is buffered in dataBuffer and _tempDataBuffer (which unwrittenBytes reads) and sent "
        "by doWrite, so that writing at once when both are empty keeps the order of the bytes",
        "26.10.0",
        {
            "24.11.0": "deb99b7ed4ab40201180e21327cddf2333ea3f777161ea76f4a59a96e707c922",
            "26.10.0": "deb99b7ed4ab40201180e21327cddf2333ea3f777161ea76f4a59a96e707c922",
        },
    ),
    Mirror(
        "twisted.internet.abstract:FileDescriptor.loseConnection",
        "prefork/child/accept.py: _ImmediateWrites.loseConnection",
        "that a close with nothing buffered and no producer only waits for doWrite to find the buffer "
        "empty, which _ImmediateWrites does without waiting",
        "26.10.0",
        {
            "24.11.0": "07f0e4ae90de18d257731e60afa38ebc514e8305cab42ef21add64e2206b3b5a",
            "26.10.0": "07f0e4ae90de18d257731e60afa38ebc514e8305cab42ef21add64e2206b3b5a",
        },
    ),
    Mirror(
        "twisted.logger._file:FileLogObserver.__call__",
        "prefork/master/outputrelay.py: TextLogTarget.write",
        "that twistd's text observer writes each event's formatted text to its file and flushes it, which "
        "TextLogTarget does for a batch of lines at once",
        "26.10.0",
        {
            "24.11.0": "0d0be3270521f4260893beacd135525ac5e626e0f234fc7131ad9331d2f54e1c",
            "26.10.0": "0d0be3270521f4260893beacd135525ac5e626e0f234fc7131ad9331d2f54e1c",
        },
    ),
    Mirror(
        "twisted.scripts._twistd_unix:UnixAppLogger._getLogObserver",
        "prefork/master/twistdlog.py: findLogFile",
        "that twistd's SIGUSR1 handler (rotateLog) still holds the LogFile in its closure, where findLogFile "
        "looks for it to reopen the log",
        "26.10.0",
        {
            "24.11.0": "6252b8d7ca94eed5648ca50f121867bcbf5ff1d243c42db290c18c99487942b1",
            "26.10.0": "6252b8d7ca94eed5648ca50f121867bcbf5ff1d243c42db290c18c99487942b1",
        },
    ),
    Mirror(
        "twisted.internet.unix:Port.startListening",
        "prefork/twistedinternals.py: startAdoptedUNIXPort",
        "the steps of starting a port on its preexisting socket (the descriptor reserve, the factory, the "
        "socket, reading), copied less the listen() and the chmod",
        "26.10.0",
        {
            "24.11.0": "8d3b4ecc3b3556864a29687f9abd72a43c4248a2c8e964b1886691f12a5a13d9",
            "26.10.0": "385ad0fc02310b580cae21bec700fd4113a74c43a1c82c835e7f21322ba2806b",
        },
    ),
    Mirror(
        "twisted.web.http:HTTPChannel._respondToBadRequestAndDisconnect",
        "prefork/web/resourcechannel.py: ResourceChannel.loseConnection",
        "that Twisted refuses a request it cannot read by writing a bare 400 and calling loseConnection, "
        "which is how ResourceChannel tells such a refusal (TWISTED_REFUSAL) to count and log it",
        "26.10.0",
        {
            "24.11.0": "d383ac226ffeb20d3a5c0773a4f58bf0ee47cdebba3f3fcf8c8ec3007b34a39d",
            "26.10.0": "d383ac226ffeb20d3a5c0773a4f58bf0ee47cdebba3f3fcf8c8ec3007b34a39d",
        },
    ),
    Mirror(
        "twisted.web.http:HTTPChannel.lineReceived",
        "prefork/web/resourcechannel.py: ResourceChannel._headReceived",
        "that a head handed over line by line (request line, field lines, empty line) makes one request, "
        "that nothing is read after a response that closed the connection (the persistent check "
        "_headReceived repeats), and that the empty line starts the body or the request",
        "26.10.0",
        {
            "24.11.0": "adca51799e8550fc83476b665988b2a150f466917da701106d4687dc7fc9affe",
            "26.10.0": "adca51799e8550fc83476b665988b2a150f466917da701106d4687dc7fc9affe",
        },
    ),
    Mirror(
        "twisted.web.http:HTTPChannel.requestDone",
        "prefork/web/resourcechannel.py: ResourceChannel.requestDone",
        "that a persistent connection reads what was pipelined through dataReceived (where the next "
        "request's header timeout starts) and restores the timeout it had before the request, which "
        "ResourceChannel then sets to the keep-alive timeout",
        "26.10.0",
        {
            "24.11.0": "b285de062be1098ec37bd9018e6a0ce79eca03a82c6c7678b3134d76f6dd8062",
            "26.10.0": "b285de062be1098ec37bd9018e6a0ce79eca03a82c6c7678b3134d76f6dd8062",
        },
    ),
    Mirror(
        "twisted.internet.main:installReactor",
        "prefork/master/forkedtemplate.py: _forgetMaster",
        "that a reactor is installed in sys.modules['twisted.internet.reactor'] and as twisted.internet.reactor "
        "only, the two places _forgetMaster clears so that each worker installs its own",
        "26.10.0",
        {
            "24.11.0": "fdcb5b424cf161ef69334eb6ad77f788bd4e7fde79ea297a5f3fec954dc90237",
            "26.10.0": "fdcb5b424cf161ef69334eb6ad77f788bd4e7fde79ea297a5f3fec954dc90237",
        },
    ),
)


checkTwisted()
